"""The fast step computes the reference step's loss and gradients (float64, tight tolerance)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from deeprec.data.batching import row_batch
from deeprec.data.sparse import CSRMatrix
from deeprec.model.autoencoder import AutoEncoder
from deeprec.step.fast import FastStep
from deeprec.step.reference import reference_step

from .fp32_bound import C_BOUND, EPS32, assert_close_normwise, chain_length

N_ROWS, N_COLS = 24, 37


def random_matrix(seed: int, density: float = 0.2, zero_ratings: bool = True) -> CSRMatrix:
    rng = np.random.default_rng(seed)
    mask = rng.random((N_ROWS, N_COLS)) < density
    mask[:, 0] = True  # every row rated something
    rows, cols = np.nonzero(mask)
    low = 0 if zero_ratings else 1  # 0 is a valid rating: masks are explicit
    values = rng.integers(low, 6, size=rows.shape[0]).astype(np.float32)
    return CSRMatrix.from_coo(rows, cols, values, (N_ROWS, N_COLS))


def make_models(constrained: bool, activation: str = "selu", last: str = "identity", **kw):
    torch.manual_seed(3)
    ref = AutoEncoder(
        N_COLS,
        [8, 6, 5],
        activation=activation,
        last_activation=last,
        constrained=constrained,
        **kw,
    ).double()
    return ref, copy.deepcopy(ref)


def run_both(
    ref,
    fast,
    batch,
    *,
    refeed: int,
    strategy: str,
    input_strategy: str = "sparse",
    momentum: float = 0.0,
    device: torch.device | None = None,
):
    """One reference and one fast step from the same weights and seed (on `device`)."""
    if device is not None:  # tests/gpu
        ref, fast, batch = ref.to(device), fast.to(device), batch.to(device)
    opt_ref = torch.optim.SGD(ref.parameters(), lr=0.05, momentum=momentum)
    opt_fast = torch.optim.SGD(fast.parameters(), lr=0.05, momentum=momentum)
    step = FastStep(
        fast, opt_fast, refeed_steps=refeed, output_strategy=strategy, input_strategy=input_strategy
    )
    torch.manual_seed(11)
    r = reference_step(ref, opt_ref, batch, refeed_steps=refeed)
    torch.manual_seed(11)
    f = step(batch)
    return r, f


def assert_same(ref, fast, r, f):
    assert f.count == r.count
    assert f.sse == pytest.approx(r.sse, rel=1e-10, abs=1e-10)
    assert f.loss == pytest.approx(r.loss, rel=1e-10, abs=1e-10)
    for (name, p_ref), (_, p_fast) in zip(
        ref.named_parameters(), fast.named_parameters(), strict=True
    ):
        torch.testing.assert_close(p_fast.grad, p_ref.grad, rtol=1e-9, atol=1e-11, msg=name)
        torch.testing.assert_close(p_fast.detach(), p_ref.detach(), rtol=1e-9, atol=1e-11)


def assert_close_in_fp32(ref, fast, r, f):
    """The fp32 counterpart of assert_same: the same step within fp32 rounding."""
    assert f.count == r.count
    k = chain_length(ref)
    assert abs(f.loss - r.loss) <= C_BOUND * (k + 1) * EPS32 * abs(r.loss)
    for (name, p_ref), (_, p_fast) in zip(
        ref.named_parameters(), fast.named_parameters(), strict=True
    ):
        assert_close_normwise(p_fast.grad, p_ref.grad, k, f"{name} gradient")
        assert_close_normwise(p_fast.detach(), p_ref.detach(), k, name)


@pytest.mark.parametrize("constrained", [False, True])
@pytest.mark.parametrize("strategy", ["dense", "sparse", "union", "gather"])
def test_same_loss_and_gradients_without_refeeding(constrained: bool, strategy: str) -> None:
    batch = row_batch(random_matrix(0), np.array([3, 0, 7, 11, 5, 2, 19, 23]))
    ref, fast = make_models(constrained)
    r, f = run_both(ref, fast, batch, refeed=0, strategy=strategy)
    assert_same(ref, fast, r, f)


@pytest.mark.parametrize("constrained", [False, True])
@pytest.mark.parametrize("strategy", ["dense", "sparse"])
@pytest.mark.parametrize("refeed", [1, 2])
def test_same_updates_with_refeeding(constrained: bool, strategy: str, refeed: int) -> None:
    """After the sparse update and `refeed` dense updates the weights and the last pass's
    gradients match: each re-feed pass got the same f(x) input and the same gradients."""
    batch = row_batch(random_matrix(1), np.arange(10))
    ref, fast = make_models(constrained)
    r, f = run_both(ref, fast, batch, refeed=refeed, strategy=strategy)
    assert_same(ref, fast, r, f)


@pytest.mark.parametrize(
    ("activation", "last"),
    [
        ("sigmoid", "selu"),
        ("relu", "relu6"),
        ("tanh", "sigmoid"),
        ("elu", "swish"),
        ("lrelu", "tanh"),
        ("swish", "lrelu"),
        ("relu6", "elu"),
        ("identity", "relu"),
    ],
)
def test_every_activation(activation: str, last: str) -> None:
    batch = row_batch(random_matrix(2, zero_ratings=False), np.arange(12))
    ref, fast = make_models(False, activation, last)
    r, f = run_both(ref, fast, batch, refeed=1, strategy="sparse")
    assert_same(ref, fast, r, f)


@pytest.mark.parametrize("placement", ["code", "all"])
@pytest.mark.parametrize("constrained", [False, True])
def test_dropout_draws_match_reference(placement: str, constrained: bool) -> None:
    batch = row_batch(random_matrix(4), np.arange(N_ROWS))
    ref, fast = make_models(constrained, dropout=0.5, dropout_placement=placement)
    r, f = run_both(ref, fast, batch, refeed=1, strategy="sparse", input_strategy="dense")
    assert_same(ref, fast, r, f)


def test_automatic_choice_keeps_the_math() -> None:
    batch = row_batch(random_matrix(5), np.arange(16))
    ref, fast = make_models(False)
    r, f = run_both(ref, fast, batch, refeed=0, strategy="auto", input_strategy="auto")
    assert_same(ref, fast, r, f)


def test_fast_layout_keeps_state_dict() -> None:
    ref, fast = make_models(True)
    FastStep(fast, torch.optim.SGD(fast.parameters(), lr=0.1))
    assert not fast.encoder_weights[0].is_contiguous()  # stored input-major
    state = fast.state_dict()
    assert all(v.is_contiguous() for v in state.values())
    for key, value in ref.state_dict().items():
        assert torch.equal(state[key], value)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_optimizer_state_matches_reference_layout(optimizer: str) -> None:
    """Momentum/Adam state of the input-major first weight is saved in the parameter's layout,
    so a checkpoint written in fast mode resumes in either mode."""
    matrix = random_matrix(6)
    ref, fast = make_models(True)

    def build(model):
        if optimizer == "sgd":
            return torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        return torch.optim.Adam(model.parameters(), lr=0.01)

    opt_ref, opt_fast = build(ref), build(fast)
    step = FastStep(fast, opt_fast, output_strategy="sparse")
    for rows in (np.arange(8), np.arange(8, 20)):
        batch = row_batch(matrix, rows)
        reference_step(ref, opt_ref, batch)
        step(batch)
    for p_ref, p_fast in zip(ref.parameters(), fast.parameters(), strict=True):
        torch.testing.assert_close(p_fast.detach(), p_ref.detach(), rtol=1e-9, atol=1e-11)
    s_ref, s_fast = opt_ref.state_dict(), opt_fast.state_dict()
    for index, entry in s_ref["state"].items():
        for key, value in entry.items():
            torch.testing.assert_close(s_fast["state"][index][key], value, rtol=1e-9, atol=1e-11)
    # resume: load the saved state into a fresh fast optimizer and keep training identically
    fresh = copy.deepcopy(fast)
    opt_fresh = build(fresh)
    step_fresh = FastStep(fresh, opt_fresh, output_strategy="sparse")
    opt_fresh.load_state_dict(copy.deepcopy(s_fast))
    batch = row_batch(matrix, np.arange(20, 24))
    step(batch)
    step_fresh(batch)
    for p_a, p_b in zip(fast.parameters(), fresh.parameters(), strict=True):
        torch.testing.assert_close(p_b.detach(), p_a.detach(), rtol=0, atol=0)


def test_before_update_hook_sees_every_gradient_contiguous() -> None:
    """The hook a distributed wrapper uses to all-reduce hand-computed gradients."""
    _, fast = make_models(True)
    opt = torch.optim.SGD(fast.parameters(), lr=0.1)
    step = FastStep(fast, opt, refeed_steps=1, output_strategy="dense")
    seen = []

    def hook(params):
        assert all(p.grad is not None and p.grad.is_contiguous() for p in params)
        seen.append(len(params))
        for p in params:
            p.grad.zero_()  # what the optimizer then applies

    step.before_update = hook
    before = [p.detach().clone() for p in fast.parameters()]
    step(row_batch(random_matrix(7), np.arange(6)))
    assert seen == [len(list(fast.parameters()))] * 2  # sparse pass + one re-feed pass
    for p, b in zip(fast.parameters(), before, strict=True):
        assert torch.equal(p.detach(), b)


@pytest.mark.parametrize("strategy", ["dense", "sparse"])
@pytest.mark.parametrize("input_strategy", ["sparse", "dense"])
def test_input_row_scale_matches_reference(strategy: str, input_strategy: str) -> None:
    """input_row_scale: the fast step scales the sparse input values exactly as
    AutoEncoder.scale_inputs scales the dense rows (0 ratings do not count)."""
    batch = row_batch(random_matrix(6), np.arange(N_ROWS))
    ref, fast = make_models(False, input_row_scale=2.5)
    r, f = run_both(ref, fast, batch, refeed=0, strategy=strategy, input_strategy=input_strategy)
    assert_same(ref, fast, r, f)
    plain_ref, _ = make_models(False)
    r_plain = reference_step(
        plain_ref, torch.optim.SGD(plain_ref.parameters(), lr=0.05), batch, refeed_steps=0
    )
    assert r_plain.loss != pytest.approx(r.loss)  # the option changes the math


def test_input_row_scale_refuses_refeeding() -> None:
    from deeprec.errors import ConfigError

    _, fast = make_models(False, input_row_scale=1.0)
    with pytest.raises(ConfigError, match="input_row_scale"):
        FastStep(fast, torch.optim.SGD(fast.parameters(), lr=0.1), refeed_steps=1)


def test_rated_indicator_is_refused_by_the_fast_step() -> None:
    from deeprec.errors import ConfigError

    _, fast = make_models(False, rated_indicator=True)
    with pytest.raises(ConfigError, match=r"rated_indicator.*compute: reference"):
        FastStep(fast, torch.optim.SGD(fast.parameters(), lr=0.1))


@pytest.mark.parametrize("scale", [0.0, 2.5])
def test_fast_evaluation_matches_reference_with_rated_indicator(scale: float) -> None:
    from deeprec.train.evaluation import predict_rows

    matrix = random_matrix(7)
    model, _ = make_models(False, rated_indicator=True, input_row_scale=scale)
    rows = np.arange(N_ROWS)
    fast = predict_rows(model, matrix, rows, batch_size=5, compute="fast")
    ref = predict_rows(model, matrix, rows, batch_size=5, compute="reference")
    torch.testing.assert_close(fast, ref, rtol=1e-9, atol=1e-11)
