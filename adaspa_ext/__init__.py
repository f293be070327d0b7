"""adaspa: training-free adaptive block-sparse attention (AdaSpa) for video diffusion transformers.

Importing registers the torch.ops.adaspa.* custom ops (sparse_attn, attn_search, block_scores,
select_blocks, and the runtime's helpers sparse_attn_out and mask_to_idx). No CUDA work happens at
import time. The ops are forward-only: a gradient through them raises NotImplementedError. How the
method works: docs/method.md.
"""
from . import _build_config
from . import reference
from .config import AdaSpaConfig
from .ops import (attn_search, block_scores, mask_to_idx, num_blocks, select_blocks, sparse_attn, sparse_attn_out,
                  validate_block_index)
from .runtime import AdaSpaSession, LayerState, TextSpec, adaspa_attention

__version__ = _build_config.VERSION

__all__ = ["sparse_attn", "attn_search", "block_scores", "select_blocks", "sparse_attn_out", "mask_to_idx",
           "validate_block_index", "num_blocks",
           "AdaSpaConfig", "AdaSpaSession", "LayerState", "TextSpec", "adaspa_attention", "reference", "__version__"]
