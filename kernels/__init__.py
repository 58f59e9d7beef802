"""GPU kernels (Triton) with plain torch references (installed as ``harness.kernels``).

- ``prefix_attention``: decode attention with a shared prefix (Hydragen): prefix part + per-sample
  suffix part, merged exactly by log-sum-exp.
- ``sampling``: the seeded sampler of the hf backend: temperature / top-k / top-p by inverse CDF
  on Philox uniforms keyed by (seed, step), so tokens are batch-invariant (plain torch, any device).
- ``hf_attention``: a prefix-sharing KV cache and the "t2_prefix" transformers attention function
  (imported on use: it needs transformers).
"""

# The submodules keep their names (``harness.kernels.prefix_attention`` is the module; its part
# functions ``prefix_attention`` / ``suffix_attention`` are reached through it).
from .prefix_attention import merge_attention, merge_two, shared_prefix_attention
from .sampling import philox4x32, sample, uniforms

__all__ = ["merge_attention", "merge_two", "shared_prefix_attention", "philox4x32", "sample", "uniforms"]
