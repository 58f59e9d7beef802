"""GPU kernels (Triton) with plain torch references (installed as ``harness.kernels``).

- ``prefix_attention``: decode attention with a shared prefix (Hydragen): prefix part + per-sample
  suffix part, merged exactly by log-sum-exp.
- ``sampling``: temperature / top-k / top-p sampling with Philox random numbers keyed by
  (seed, sample_idx, step), so tokens are batch-invariant.
- ``hf_attention``: a prefix-sharing KV cache and the "t2_prefix" transformers attention function,
  and ``decode`` for n samples of one prompt (imported on use: it needs transformers).
"""

# The submodules keep their names (``harness.kernels.prefix_attention`` is the module; its part
# functions ``prefix_attention`` / ``suffix_attention`` are reached through it).
from .prefix_attention import merge_attention, merge_two, shared_prefix_attention
from .sampling import philox4x32, sample, sample_ref

__all__ = ["merge_attention", "merge_two", "shared_prefix_attention", "philox4x32", "sample", "sample_ref"]
