"""AdaSpaConfig: the schedule and sparsity settings of docs/method.md ("Head-adaptive sparsity",
"The schedule across denoising steps")."""
from __future__ import annotations

from dataclasses import dataclass, field

from .ops import SUPPORTED_BLOCK_SIZES


@dataclass(frozen=True)
class AdaSpaConfig:
    """Settings of the AdaSpa search-and-reuse schedule. Defaults are the paper's.

    sparsity: base sparsity s in (1/3, 1): share of (non-text) key blocks each row drops. The
        head-adaptive tiers use (1 + s) / 2 and (3 s - 1) / 2, so s <= 1/3 would ask for a
        negative tier. Use `sparsity=0.0` only with `head_adaptive=False` (keeps every block).
    block_size: 64 or 128 tokens per block (query and key).
    num_steps: denoising steps T of a generation (steps are counted from 0).
    warmup_steps: steps 0 .. warmup_steps - 1 run dense attention.
    search_steps: steps that search the pattern; the first runs the fused search (dense output,
        LSE cached), later ones the LSE-cached search. All must lie in [warmup_steps, num_steps).
    recall_threshold: tau; heads whose recall at the base sparsity exceeds it may go sparser.
    head_adaptive: False gives every head the base sparsity (ablation baseline).
    cache_lse: True keeps each layer's float32 LSE from the fused search for the later, cheaper
        cached searches (the paper's schedule). False drops it: every search step runs the fused
        search, which costs about half a dense step more per later search but saves B x H x N x 4
        bytes per layer (the larger part of the cache: on CogVideoX1.5 1.3 of 2.1 GiB). None (the
        default): keep it when one forward's LSE over every wrapped layer is at most `lse_budget`
        of the transformer's weight bytes (both known when `apply` wraps a model; without one it
        is kept). The pattern bits are always kept.
    lse_budget: see cache_lse. At the presets' sizes one forward's LSE is 0.8-2.7 % of the weights
        for HunyuanVideo, HunyuanVideo 1.5 and Wan (kept) and 12 % for CogVideoX1.5 (48 heads,
        both CFG branches as one batch of 2, 10 GiB of weights: dropped; kept, it made the peak
        memory 9 % above the dense run's instead of 4 %).
    """
    sparsity: float = 0.8
    block_size: int = 64
    num_steps: int = 50
    warmup_steps: int = 10
    search_steps: tuple[int, ...] = field(default=(10, 30))
    recall_threshold: float = 0.8
    head_adaptive: bool = True
    cache_lse: bool | None = None
    lse_budget: float = 0.05

    def __post_init__(self):
        object.__setattr__(self, "search_steps", tuple(int(s) for s in self.search_steps))
        if self.block_size not in SUPPORTED_BLOCK_SIZES:
            raise ValueError(f"AdaSpaConfig.block_size must be one of {SUPPORTED_BLOCK_SIZES}, got {self.block_size}")
        if self.head_adaptive and not (1 / 3 < self.sparsity < 1):
            raise ValueError(f"AdaSpaConfig.sparsity must lie in (1/3, 1) with head_adaptive=True, got {self.sparsity}")
        if not self.head_adaptive and not (0 <= self.sparsity < 1):
            raise ValueError(f"AdaSpaConfig.sparsity must lie in [0, 1), got {self.sparsity}")
        if self.num_steps < 1:
            raise ValueError(f"AdaSpaConfig.num_steps must be >= 1, got {self.num_steps}")
        if not 0 <= self.warmup_steps < self.num_steps:
            raise ValueError(f"AdaSpaConfig.warmup_steps must lie in [0, num_steps={self.num_steps}), "
                             f"got {self.warmup_steps}")
        if not self.search_steps:
            raise ValueError("AdaSpaConfig.search_steps must name at least one step")
        if list(self.search_steps) != sorted(set(self.search_steps)):
            raise ValueError(f"AdaSpaConfig.search_steps must be strictly increasing, got {self.search_steps}")
        if self.search_steps[0] < self.warmup_steps:
            raise ValueError(f"AdaSpaConfig.search_steps {self.search_steps} start before the end of warm-up "
                             f"(warmup_steps={self.warmup_steps})")
        if self.search_steps[-1] >= self.num_steps:
            raise ValueError(f"AdaSpaConfig.search_steps {self.search_steps} must be < num_steps={self.num_steps}")
        if not self.lse_budget >= 0:
            raise ValueError(f"AdaSpaConfig.lse_budget must be >= 0, got {self.lse_budget}")
        if not 0 < self.recall_threshold <= 1:
            raise ValueError(f"AdaSpaConfig.recall_threshold must lie in (0, 1], got {self.recall_threshold}")

    def schedule_phase(self, step: int) -> str:
        """Phase of a layer that has a cached pattern: 'dense', 'search' or 'sparse'."""
        if step < self.warmup_steps or step < self.search_steps[0]:
            return "dense"
        if step in self.search_steps:
            return "search"
        return "sparse"

    def tier_sparsities(self) -> tuple[float, float, float]:
        """(high-recall tier, base, low-recall tier) sparsities; mean stays `sparsity`."""
        s = self.sparsity
        if not self.head_adaptive:
            return s, s, s
        return (1 + s) / 2, s, max(0.0, (3 * s - 1) / 2)
