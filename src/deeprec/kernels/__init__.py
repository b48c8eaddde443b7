"""The fast step's CPU (and a few GPU) kernels, each behind a plain PyTorch fallback.

Every kernel here computes something torch can compute with public ops; the kernel only
does it faster on some machines. Interface: the step calls each module's function (e.g.
`cpu_gemm.linear`, `dropout_noise.dropout_noise`, `gather_dot.observed_outputs`), which
runs the kernel where it applies, passed its self-check and is enabled, else the
fallback. `switch.disabled()` forces the fallbacks; `switch.status()` lists what runs.
Private torch interfaces used (each guarded, each with a tested fallback): Inductor's C++
build cache (`native.py`, for the observed-entry output loop) and
`torch.ops.mkldnn._linear_pointwise` (`cpu_gemm.py`). Kernels that saved well under 10%
of a step were removed (docs/results/kernels.md).
"""

from deeprec.kernels.switch import KERNELS, disabled, enabled, status

__all__ = ["KERNELS", "disabled", "enabled", "status"]
