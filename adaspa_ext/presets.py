"""Model shapes (HunyuanVideo, Wan, CogVideoX at their published resolutions; docs/method.md) and
benchmark shapes (docs/performance.md): the one table every benchmark, the demo and the tests read."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Preset:
    name: str
    batch: int
    heads: int
    head_dim: int
    frames: int          # latent frames x height x width = video tokens
    height: int
    width: int
    text_tokens: int     # 0: no text in self-attention
    text_first: bool     # CogVideoX puts text first, HunyuanVideo last
    layers: int

    @property
    def video_tokens(self) -> int:
        return self.frames * self.height * self.width

    @property
    def tokens(self) -> int:
        return self.video_tokens + self.text_tokens


PRESETS = {p.name: p for p in [
    Preset("hunyuan-720p", 1, 24, 128, 33, 45, 80, 256, False, 60),
    Preset("wan14b-720p", 1, 40, 128, 21, 45, 80, 0, False, 40),
    Preset("wan1.3b-480p", 1, 12, 128, 21, 30, 52, 0, False, 30),
    # CogVideoX1.5 at 1360 x 768, 161 frames: 41 latent frames / temporal patch 2 -> 21, and
    # 96 x 170 latents / 2 x 2 patches -> 48 x 85: 85,680 video tokens (the top of ~45K-85K).
    Preset("cogvideox1.5-720p", 2, 48, 64, 21, 48, 85, 226, True, 42),
    # CPU-sized workloads: the demo's default and the tests'.
    Preset("demo-cpu", 1, 4, 64, 4, 16, 16, 32, False, 2),
    Preset("tiny", 1, 4, 64, 4, 8, 8, 16, False, 2),
]}

# Kernel benchmark shapes (docs/performance.md): (name, B, H, D, N).
KERNEL_BENCH_SHAPES = [
    ("h24-d128-32k", 1, 24, 128, 32768),
    ("hunyuan-720p", 1, 24, 128, PRESETS["hunyuan-720p"].tokens),
    ("h48-d64-32k", 1, 48, 64, 32768),
]
