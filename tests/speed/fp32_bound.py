"""Tolerances for fp32 products from an error bound, not from one CPU's rounding.

A dot product of length K summed in fp32 (any order, blocking or FMA use) differs from the
exact value by at most gamma_K * sum_k |a_k * b_k| with gamma_K ~ K * u, u = 2^-24 the unit
roundoff (Higham, Accuracy and Stability of Numerical Algorithms, 2nd ed., section 3.1).
Elementwise for C = A @ B (+ bias): |C - C_exact| <= C_BOUND * (K + 1) * EPS32 *
((|A| @ |B|) + |bias|), with EPS32 = 2^-23 = 2u. C_BOUND = 2 covers two such results being
compared with each other (each within the bound of the exact value), plus inputs that
were themselves rounded to fp32 once. Kernels are compared with the float64 product.
"""

from __future__ import annotations

import torch

EPS32 = torch.finfo(torch.float32).eps
C_BOUND = 2.0


def product_bound(a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None = None):
    """Elementwise bound on the fp32 rounding error of a @ b (+ bias), in float64."""
    k = a.shape[-1]
    magnitude = a.double().abs() @ b.double().abs()
    if bias is not None:
        magnitude = magnitude + bias.double().abs()
    return C_BOUND * (k + 1) * EPS32 * magnitude


def assert_within_bound(got: torch.Tensor, want: torch.Tensor, bound: torch.Tensor) -> None:
    """|got - want| <= bound elementwise (want, bound: float64), with the worst offender."""
    assert got.shape == want.shape, (got.shape, want.shape)
    err = (got.double() - want.double()).abs()
    excess = err - bound
    worst = int(excess.argmax()) if excess.numel() else 0
    assert excess.numel() == 0 or float(excess.max()) <= 0, (
        f"error {float(err.flatten()[worst]):.3g} > bound {float(bound.flatten()[worst]):.3g} "
        f"at flat index {worst}"
    )


def assert_product_close(
    got: torch.Tensor, a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None = None
) -> None:
    """`got` is a @ b (+ bias) computed in fp32: within the bound of the float64 product."""
    want = a.double() @ b.double()
    if bias is not None:
        want = want + bias.double()
    assert_within_bound(got, want, product_bound(a, b, bias))


def assert_close_normwise(got: torch.Tensor, want: torch.Tensor, k: int, msg: str = "") -> None:
    """For results of a chain of fp32 products whose summed lengths are `k` (a training
    step: every layer's fan-in, forward and backward): the normwise form of the bound,
    |got - want| <= C_BOUND * (k + 1) * EPS32 * max |want|, elementwise."""
    scale = float(want.double().abs().max()) if want.numel() else 0.0
    bound = torch.full(want.shape, C_BOUND * (k + 1) * EPS32 * scale, dtype=torch.float64)
    try:
        assert_within_bound(got, want, bound)
    except AssertionError as exc:
        raise AssertionError(f"{msg}: {exc}") from None


def chain_length(model: torch.nn.Module) -> int:
    """Summed fan-in of a model's weight matrices, twice (forward and backward products)."""
    return 2 * sum(int(p.shape[1]) for p in model.parameters() if p.dim() == 2)
