"""Model shapes (HunyuanVideo, Wan, CogVideoX at their published resolutions; docs/method.md) and
benchmark shapes (docs/performance.md): the one table every benchmark, the demo and the tests read.

A model preset also names the diffusers transformer behind the shape (ModelSpec): its class and
published configuration, the latent and text inputs its pipeline gives it at that resolution, how
the pipeline runs classifier-free guidance, its scheduler, and a tiny variant of the same class for
CPU tests. tests/test_e2e.py checks that each spec builds a model of the preset's attention shape.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ModelSpec:
    """A diffusers transformer at a preset's size and the inputs its pipeline gives it.

    cls: diffusers transformer class name.
    config: constructor arguments, as in the published checkpoint's config.json.
    latent: (C, F, H, W) of the transformer's video input for one prompt (latent frames and size
        before patching; CogVideoX takes it as [B, F, C, H, W], the others as [B, C, F, H, W]).
    text: (tokens, dim) of each conditioning sequence the transformer takes, in forward order
        (HunyuanVideo 1.5: MLLM, ByT5, image); text_valid: valid (unpadded) tokens of each.
    cfg: how the pipeline runs classifier-free guidance: "embedded" (guidance distilled into the
        model: one forward per step), "separate" (cond and uncond as two forwards), "batched" (one
        forward of batch 2).
    scheduler: (diffusers scheduler class, its config); sigmas: the pipeline passes
        linspace(1, 0) sigmas to set_timesteps.
    per_token_timestep: the pipeline passes one timestep per video token (Wan 2.2 TI2V).
    tiny: overrides (config entries merged, other fields replaced) giving a CPU-sized variant.
    """
    cls: str
    config: dict = field(hash=False)
    latent: tuple[int, int, int, int]
    text: tuple[tuple[int, int], ...]
    text_valid: tuple[int, ...]
    cfg: str
    scheduler: tuple = field(hash=False)
    sigmas: bool = False
    per_token_timestep: bool = False
    tiny: dict = field(default_factory=dict, hash=False, compare=False)

    def variant(self, tiny: bool = False) -> "ModelSpec":
        """This spec, or its tiny variant (same class, CPU-sized)."""
        if not tiny:
            return self
        t = dict(self.tiny)
        return dataclasses.replace(self, config={**self.config, **t.pop("config", {})}, tiny={}, **t)


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
    model: ModelSpec | None = None  # the diffusers transformer behind the shape (bench_e2e)

    @property
    def video_tokens(self) -> int:
        return self.frames * self.height * self.width

    @property
    def tokens(self) -> int:
        return self.video_tokens + self.text_tokens


_WAN_SCHEDULER = {"prediction_type": "flow_prediction", "use_flow_sigmas": True, "num_train_timesteps": 1000}
_WAN_21 = {"patch_size": (1, 2, 2), "attention_head_dim": 128, "in_channels": 16, "out_channels": 16,
           "text_dim": 4096, "freq_dim": 256, "qk_norm": "rms_norm_across_heads", "cross_attn_norm": True,
           "eps": 1e-6, "added_kv_proj_dim": None}
_WAN_TINY = dict(config=dict(num_attention_heads=2, attention_head_dim=64, in_channels=4, out_channels=4, text_dim=16,
                             freq_dim=16, ffn_dim=32, num_layers=2, rope_max_seq_len=32),
                 latent=(4, 4, 16, 16), text=((12, 16),), text_valid=(8,))

PRESETS = {p.name: p for p in [
    Preset("hunyuan-720p", 1, 24, 128, 33, 45, 80, 256, False, 60, ModelSpec(
        "HunyuanVideoTransformer3DModel",
        dict(in_channels=16, out_channels=16, num_attention_heads=24, attention_head_dim=128, num_layers=20,
             num_single_layers=40, num_refiner_layers=2, mlp_ratio=4.0, patch_size=2, patch_size_t=1,
             qk_norm="rms_norm", guidance_embeds=True, text_embed_dim=4096, pooled_projection_dim=768,
             rope_theta=256.0, rope_axes_dim=(16, 56, 56)),
        latent=(16, 33, 90, 160), text=((256, 4096),), text_valid=(120,), cfg="embedded",  # 1280 x 720, 129 frames
        scheduler=("FlowMatchEulerDiscreteScheduler", {"shift": 7.0}), sigmas=True,
        tiny=dict(config=dict(in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=64, num_layers=1,
                              num_single_layers=1, num_refiner_layers=1, mlp_ratio=1.0, text_embed_dim=16,
                              pooled_projection_dim=8, rope_axes_dim=(16, 24, 24)),
                  latent=(4, 4, 16, 16), text=((20, 16),), text_valid=(15,)))),
    # HunyuanVideo 1.5, 720p text-to-video: 1280 x 720, 121 frames through its 16x VAE, patch 1; the
    # text segment is 1000 MLLM + 256 ByT5 + 729 image tokens (zero image embeddings for text-to-video).
    Preset("hunyuan1.5-720p", 1, 16, 128, 31, 45, 80, 1985, False, 54, ModelSpec(
        "HunyuanVideo15Transformer3DModel",
        dict(in_channels=65, out_channels=32, num_attention_heads=16, attention_head_dim=128, num_layers=54,
             num_refiner_layers=2, mlp_ratio=4.0, patch_size=1, patch_size_t=1, qk_norm="rms_norm",
             text_embed_dim=3584, text_embed_2_dim=1472, image_embed_dim=1152, rope_theta=256.0,
             rope_axes_dim=(16, 56, 56), use_meanflow=False, target_size=960, task_type="t2v"),
        latent=(65, 31, 45, 80), text=((1000, 3584), (256, 1472), (729, 1152)), text_valid=(120, 0, 0),
        cfg="separate", scheduler=("FlowMatchEulerDiscreteScheduler", {"shift": 9.0}), sigmas=True,
        tiny=dict(config=dict(in_channels=9, out_channels=4, num_attention_heads=2, attention_head_dim=64, num_layers=2,
                              num_refiner_layers=1, mlp_ratio=1.0, text_embed_dim=16, text_embed_2_dim=8,
                              image_embed_dim=8, rope_axes_dim=(16, 24, 24)),
                  latent=(9, 4, 8, 8), text=((20, 16), (6, 8), (5, 8)), text_valid=(15, 3, 0)))),
    Preset("wan14b-720p", 1, 40, 128, 21, 45, 80, 0, False, 40, ModelSpec(
        "WanTransformer3DModel", {**_WAN_21, "num_attention_heads": 40, "num_layers": 40, "ffn_dim": 13824},
        latent=(16, 21, 90, 160), text=((512, 4096),), text_valid=(120,), cfg="separate",  # 1280 x 720, 81 frames
        scheduler=("UniPCMultistepScheduler", {**_WAN_SCHEDULER, "flow_shift": 5.0}), tiny=_WAN_TINY)),
    Preset("wan1.3b-480p", 1, 12, 128, 21, 30, 52, 0, False, 30, ModelSpec(
        "WanTransformer3DModel", {**_WAN_21, "num_attention_heads": 12, "num_layers": 30, "ffn_dim": 8960},
        latent=(16, 21, 60, 104), text=((512, 4096),), text_valid=(120,), cfg="separate",  # 832 x 480, 81 frames
        scheduler=("UniPCMultistepScheduler", {**_WAN_SCHEDULER, "flow_shift": 3.0}), tiny=_WAN_TINY)),
    # Wan 2.2 TI2V 5B: 1280 x 704, 121 frames through its 16x VAE (48 latent channels), one timestep per token.
    Preset("wan2.2-ti2v-5b-720p", 1, 24, 128, 31, 22, 40, 0, False, 30, ModelSpec(
        "WanTransformer3DModel", {**_WAN_21, "num_attention_heads": 24, "num_layers": 30, "ffn_dim": 14336,
                                  "in_channels": 48, "out_channels": 48},
        latent=(48, 31, 44, 80), text=((512, 4096),), text_valid=(120,), cfg="separate",
        scheduler=("UniPCMultistepScheduler", {**_WAN_SCHEDULER, "flow_shift": 5.0}), per_token_timestep=True,
        tiny=_WAN_TINY)),
    # CogVideoX1.5 at 1360 x 768, 161 frames: 41 latent frames, padded to 42 by the pipeline / temporal
    # patch 2 -> 21, and 96 x 170 latents / 2 x 2 patches -> 48 x 85: 85,680 video tokens (the top of ~45K-85K).
    Preset("cogvideox1.5-720p", 2, 48, 64, 21, 48, 85, 226, True, 42, ModelSpec(
        "CogVideoXTransformer3DModel",
        dict(num_attention_heads=48, attention_head_dim=64, in_channels=16, out_channels=16, num_layers=42,
             time_embed_dim=512, text_embed_dim=4096, max_text_seq_length=226, patch_size=2, patch_size_t=2,
             patch_bias=False, sample_frames=81, sample_height=300, sample_width=300, activation_fn="gelu-approximate",
             attention_bias=True, flip_sin_to_cos=True, freq_shift=0, norm_elementwise_affine=True, norm_eps=1e-5,
             spatial_interpolation_scale=1.875, temporal_compression_ratio=4, temporal_interpolation_scale=1.0,
             timestep_activation_fn="silu", use_learned_positional_embeddings=False,
             use_rotary_positional_embeddings=True),
        latent=(16, 42, 96, 170), text=((226, 4096),), text_valid=(226,), cfg="batched",
        scheduler=("CogVideoXDPMScheduler", dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                                 clip_sample=False, num_train_timesteps=1000,
                                                 prediction_type="v_prediction", rescale_betas_zero_snr=True,
                                                 set_alpha_to_one=True, snr_shift_scale=1.0,
                                                 timestep_spacing="trailing")),
        tiny=dict(config=dict(num_attention_heads=2, attention_head_dim=64, in_channels=4, out_channels=4, num_layers=2,
                              time_embed_dim=16, text_embed_dim=16, max_text_seq_length=10, sample_frames=9,
                              sample_height=16, sample_width=16),
                  latent=(4, 4, 16, 16), text=((10, 16),), text_valid=(10,)))),
    # CPU-sized workloads: the demo's default and the tests'.
    Preset("demo-cpu", 1, 4, 64, 4, 16, 16, 32, False, 2),
    Preset("tiny", 1, 4, 64, 4, 8, 8, 16, False, 2),
]}

# The presets bench_e2e runs by default (issue 13: the paper's models and Wan at two sizes).
E2E_DEFAULT = ["hunyuan-720p", "wan14b-720p", "wan1.3b-480p", "cogvideox1.5-720p"]

# Kernel benchmark shapes (docs/performance.md): (name, B, H, D, N).
KERNEL_BENCH_SHAPES = [
    ("h24-d128-32k", 1, 24, 128, 32768),
    ("hunyuan-720p", 1, 24, 128, PRESETS["hunyuan-720p"].tokens),
    ("h48-d64-32k", 1, 48, 64, 32768),
]
