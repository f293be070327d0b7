"""A seeded synthetic video-attention workload with the structure AdaSpa exploits.

Tokens sit on a (frames x height x width) grid, plus an optional text segment. Per layer and head
the logits q . k combine
  * locality: random Fourier features of the token position, whose dot product approximates a
    Gaussian kernel with a head-specific spatial and temporal reach (some heads see a few
    neighbours, some most of the frame);
  * content clusters: tokens of the same cluster (smooth regions, so far-apart tokens can share
    one) attract each other whatever their distance;
  * a text sink: every query leans towards the text keys;
  * noise.
Across denoising steps q and k drift slowly (a smooth rotation between two noise fields), so the
pattern and the LSE change little from step to step, as in real DiTs. Values are smooth in
position and cluster plus noise. Used by the demo, the
schedule benchmark and the tests; q, k, v come out as [B, H, N, D].
"""
from __future__ import annotations

import math
import time

import torch
from torch import Tensor

from .config import AdaSpaConfig
from .presets import Preset
from .runtime import AdaSpaSession, TextSpec, adaspa_attention


class VideoAttentionWorkload:
    def __init__(self, preset: Preset, seed: int = 0, device="cpu", dtype=torch.float32, clusters: int = 12,
                 drift: float = 0.15):
        self.p = preset
        self.seed = seed
        self.device = torch.device(device)
        self.dtype = dtype
        self.clusters = clusters
        self.drift = drift
        self._layers: dict[int, tuple[Tensor, Tensor, Tensor, Tensor, Tensor]] = {}

    @property
    def text_slice(self) -> slice:
        p = self.p
        return slice(0, p.text_tokens) if p.text_first else slice(p.video_tokens, p.tokens)

    def _gen(self, layer: int) -> torch.Generator:
        return torch.Generator(device="cpu").manual_seed(self.seed * 1000003 + layer)

    def _base(self, layer: int):
        if layer in self._layers:
            return self._layers[layer]
        p, dev = self.p, self.device
        g = self._gen(layer)
        h, d, n = p.heads, p.head_dim, p.tokens
        m_pos, m_clu, m_txt = d // 2, d // 4, d // 8
        # token positions (video only), frames-major raster order as the models flatten them
        f, y, x = torch.meshgrid(torch.arange(p.frames), torch.arange(p.height), torch.arange(p.width), indexing="ij")
        pos = torch.stack([f, y, x], -1).reshape(-1, 3).float().to(dev)
        # per-head reach: spatial 1.5 .. 12 tokens, temporal 0.5 .. 4 frames
        sig_s = 1.5 * 2 ** (3 * torch.rand(h, generator=g))
        sig_t = 0.5 * 2 ** (3 * torch.rand(h, generator=g))
        w = torch.randn(h, m_pos, 3, generator=g) / torch.stack([sig_t, sig_s, sig_s], -1)[:, None, :]
        phase = 2 * math.pi * torch.rand(h, 1, m_pos, generator=g)
        feat = math.sqrt(2.0 / m_pos) * torch.cos(torch.einsum("nc,hmc->hnm", pos, w.to(dev)) + phase.to(dev))
        scale = d ** -0.5
        # logit budgets (after the softmax scale): locality, clusters, text sink
        a = (6 + 6 * torch.rand(h, generator=g)) / scale
        c = (2 + 6 * torch.rand(h, generator=g)) / scale
        t = (1 + 4 * torch.rand(h, generator=g)) / scale
        # clusters: nearest of a few random centres in (f, y, x), plus 10% random reassignment
        centres = torch.rand(self.clusters, 3, generator=g) * torch.tensor([p.frames, p.height, p.width])
        lab = torch.cdist(pos.cpu(), centres).argmin(-1)
        flip = torch.rand(lab.shape, generator=g) < 0.1
        lab = torch.where(flip, torch.randint(0, self.clusters, lab.shape, generator=g), lab)
        emb = torch.nn.functional.normalize(torch.randn(h, self.clusters, m_clu, generator=g), dim=-1)
        clu = emb[:, lab].to(dev)  # [H, Nv, m_clu]
        u = torch.nn.functional.normalize(torch.randn(h, m_txt, generator=g), dim=-1).to(dev)
        nv = p.video_tokens
        qb = torch.zeros(h, n, d, device=dev)
        kb = torch.zeros(h, n, d, device=dev)
        vid = slice(p.text_tokens, n) if p.text_first else slice(0, nv)
        txt = self.text_slice
        qb[:, vid, :m_pos] = feat * a.sqrt().to(dev)[:, None, None]
        kb[:, vid, :m_pos] = feat * a.sqrt().to(dev)[:, None, None]
        qb[:, vid, m_pos:m_pos + m_clu] = clu * c.sqrt().to(dev)[:, None, None]
        kb[:, vid, m_pos:m_pos + m_clu] = clu * c.sqrt().to(dev)[:, None, None]
        sl = slice(m_pos + m_clu, m_pos + m_clu + m_txt)
        qb[:, :, sl] = u[:, None, :] * t.sqrt().to(dev)[:, None, None]
        if p.text_tokens:
            kb[:, txt, sl] = u[:, None, :] * t.sqrt().to(dev)[:, None, None]
            kb[:, txt, :m_pos + m_clu] = torch.randn(h, p.text_tokens, m_pos + m_clu, generator=g).to(dev)
        noise = [torch.randn(2, h, n, d, generator=g).to(dev) for _ in range(2)]  # (start, end) fields for q, k
        # Values vary smoothly with position and cluster, as DiT features do (random V would make
        # every output a near-zero average and inflate relative errors).
        v = 0.3 * torch.randn(h, n, d, generator=g).to(dev)
        v[:, vid] += feat @ torch.randn(h, m_pos, d, generator=g).to(dev) + clu @ torch.randn(h, m_clu, d, generator=g).to(dev)
        self._layers[layer] = (qb, kb, noise[0], noise[1], v)
        return self._layers[layer]

    def qkv(self, layer: int, step: int, num_steps: int = 50) -> tuple[Tensor, Tensor, Tensor]:
        """q, k, v [B, H, N, D] of `layer` at denoising `step` (B copies share the pattern)."""
        qb, kb, nq, nk, v = self._base(layer)
        th = 0.5 * math.pi * step / max(1, num_steps - 1)
        amp = self.drift * math.sqrt(self.p.head_dim)
        q = qb + amp * (math.cos(th) * nq[0] + math.sin(th) * nq[1]) / math.sqrt(self.p.head_dim) * 4
        k = kb + amp * (math.cos(th) * nk[0] + math.sin(th) * nk[1]) / math.sqrt(self.p.head_dim) * 4
        b = self.p.batch
        out = [t.to(self.dtype).unsqueeze(0).expand(b, -1, -1, -1).contiguous() for t in (q, k, v)]
        return out[0], out[1], out[2]


def rel_err(out: Tensor, ref: Tensor) -> float:
    """Relative L2 error of out against ref."""
    return (torch.linalg.vector_norm((out - ref).float()) / torch.linalg.vector_norm(ref.float())).item()


def warm_up(q: Tensor, k: Tensor, v: Tensor, config: AdaSpaConfig, text: TextSpec) -> None:
    """Run every phase of the schedule once on a throwaway session (CUDA lazy module loading):
    a model pays that once per process, not per layer and step; timed loops start after it."""
    warm = AdaSpaSession(config, record=False)
    first = config.search_steps[0]
    for step in sorted({first, min(first + 1, config.num_steps - 1), config.search_steps[-1]}):
        warm.set_step(step)
        adaspa_attention(q, k, v, warm.state(0), warm, text, 0)


def timed(fn, device) -> tuple:
    """(fn(), milliseconds): CUDA events around the call on a GPU, the host clock on the CPU."""
    if torch.device(device).type == "cuda":
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        out = fn()
        b.record()
        b.synchronize()
        return out, a.elapsed_time(b)
    t = time.perf_counter()
    out = fn()
    return out, (time.perf_counter() - t) * 1e3
