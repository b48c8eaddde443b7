"""The fast step's CPU (and a few GPU) kernels, each behind a plain PyTorch fallback.

Every kernel here computes something torch can compute with public ops; the kernel only
does it faster on some machines. Interface: the step calls each module's function (e.g.
`cpu_gemm.linear`, `dropout_noise.dropout_noise`, `gather_dot.observed_outputs`), which
runs the kernel where it applies, passed its self-check and is enabled, else the
fallback. `switch.disabled()` forces the fallbacks; `status()` here lists what runs.
Private torch interfaces used (each guarded, each with a tested fallback): Inductor's C++
build cache (`native.py`, for the observed-entry output loop) and
`torch.ops.mkldnn._linear_pointwise` (`cpu_gemm.py`). Kernels that saved well under 10%
of a step were removed (docs/results/kernels.md).
"""

from deeprec.kernels import cpu_gemm, gather_dot, mirrored_sgd, refeed_loss
from deeprec.kernels.switch import KERNELS, disabled, enabled


def status() -> dict[str, bool]:
    """{kernel: whether it is enabled and available here}; builds the native ones (first
    call: seconds, then cached). torch.compile'd kernels count as available until a
    compile fails."""
    found = {
        "onednn_linear": cpu_gemm.onednn_available(),
        "gather_dot": gather_dot.native_kernel() is not None or not gather_dot.KERNEL.failed,
        "mirrored_sgd": not mirrored_sgd.UPDATE_KERNEL.failed,
        "refeed_loss": not refeed_loss.KERNEL.failed,
    }
    return {name: enabled(name) and ok for name, ok in found.items()}


__all__ = ["KERNELS", "disabled", "enabled", "status"]
