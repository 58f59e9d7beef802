"""GPU kernels (Triton) with plain torch references (installed as ``harness.kernels``)."""
