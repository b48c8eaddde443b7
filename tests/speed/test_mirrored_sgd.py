"""The bf16 fused update (SGD on the fp32 master + the bf16 copy in one pass) does what
torch.optim.SGD followed by a cast does, and the fast step uses it only where it applies."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import nullcontext

import pytest
import torch

from deeprec.kernels import disabled, mirrored_sgd
from deeprec.model.autoencoder import AutoEncoder
from deeprec.step.fast import FastStep

from .batches import random_batch


@pytest.fixture(params=["compiled", "eager"])
def update_path(request) -> Iterator[str]:
    """Both implementations of the update: the compiled one and the eager fallback
    (kernels.switch)."""
    with disabled("mirrored_sgd") if request.param == "eager" else nullcontext():
        yield request.param


@pytest.mark.parametrize("grad_dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_update_equals_sgd_then_cast(update_path, grad_dtype, weight_decay) -> None:
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(64, 32, generator=gen)
    grads = [torch.randn(64, 32, generator=gen).to(grad_dtype) for _ in range(3)]
    param = torch.nn.Parameter(w.clone())
    sgd = torch.optim.SGD([param], lr=0.1, momentum=0.9, weight_decay=weight_decay)
    mine, momentum = w.clone(), torch.zeros_like(w)  # m = 0 then m = mu*0 + d = d: SGD's start
    copy_low = torch.empty_like(w, dtype=torch.bfloat16)
    for g in grads:
        param.grad = g.float()
        sgd.step()
        mirrored_sgd.sgd_and_copy(mine, momentum, g, copy_low, 0.1, 0.9, weight_decay)
        torch.testing.assert_close(mine, param.detach(), rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(momentum, sgd.state[param]["momentum_buffer"])
        assert torch.equal(copy_low, mine.to(torch.bfloat16))


def test_one_call_updates_every_group_like_sgd(update_path, fresh_compiled_kernels) -> None:
    """Two param groups (decayed matrices with bf16 copies, free biases without) in one
    call: each tensor follows torch.optim.SGD with its own group's options."""
    gen = torch.Generator().manual_seed(3)
    shapes = [(40, 24), (24, 8), (8, 24)]
    mats = [torch.randn(s, generator=gen) for s in shapes]
    vecs = [torch.randn(s[0], generator=gen) for s in shapes]
    params = [torch.nn.Parameter(t.clone()) for t in mats + vecs]
    sgd = torch.optim.SGD(
        [{"params": params[:3]}, {"params": params[3:], "weight_decay": 0.0}],
        lr=0.05,
        momentum=0.9,
        weight_decay=0.01,
    )
    mat_m = [torch.zeros_like(t) for t in mats]
    vec_m = [torch.zeros_like(t) for t in vecs]
    copies = [torch.empty_like(t, dtype=torch.bfloat16) for t in mats]
    for _ in range(3):
        mat_g = [torch.randn(s, generator=gen).bfloat16() for s in shapes]
        vec_g = [torch.randn(s[0], generator=gen) for s in shapes]
        for p, g in zip(params, [g.float() for g in mat_g] + vec_g, strict=True):
            p.grad = g
        sgd.step()
        copied = list(zip(mats, mat_m, mat_g, copies, strict=True))
        plain = list(zip(vecs, vec_m, vec_g, strict=True))
        mirrored_sgd.sgd_groups(
            [
                mirrored_sgd.Group(copied, [], 0.05, 0.9, 0.01),
                mirrored_sgd.Group([], plain, 0.05, 0.9, 0.0),
            ]
        )
        for mine, param in zip(mats + vecs, params, strict=True):
            torch.testing.assert_close(mine, param.detach(), rtol=1e-6, atol=1e-6)
        for mine, param in zip(mat_m + vec_m, params, strict=True):
            torch.testing.assert_close(mine, sgd.state[param]["momentum_buffer"])
        for copy_low, mine in zip(copies, mats, strict=True):
            assert torch.equal(copy_low, mine.to(torch.bfloat16))
    assert not mirrored_sgd.UPDATE_KERNEL.failed


def test_unsupported_options_are_refused() -> None:
    p = [torch.nn.Parameter(torch.zeros(2))]
    for opt in (
        torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True),
        torch.optim.SGD(p, lr=0.1, momentum=0.0),
        torch.optim.SGD(p, lr=0.1, momentum=0.9, dampening=0.1),
        torch.optim.Adam(p, lr=0.1),
    ):
        assert not mirrored_sgd.supported_group(opt, opt.param_groups[0])
    ok = torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.1)
    assert mirrored_sgd.supported_group(ok, ok.param_groups[0])


def _batch():
    return random_batch(32, 60, seed=1)


def _train(model, fused: bool, monkeypatch, refeed: int, steps: int = 4):
    monkeypatch.setattr(mirrored_sgd, "MIN_NUMEL", 1)
    groups = [  # as optim.param_groups makes them: decayed matrices, free biases
        {"params": [p for p in model.parameters() if p.dim() == 2]},
        {"params": [p for p in model.parameters() if p.dim() == 1], "weight_decay": 0.0},
    ]
    opt = torch.optim.SGD(groups, lr=0.01, momentum=0.9, weight_decay=0.001)
    step = FastStep(
        model,
        opt,
        precision="bf16",
        refeed_steps=refeed,
        input_strategy="sparse",
        output_strategy="sparse",
    )
    if not fused:  # same bf16 gradients, handed to optimizer.step() + cast instead
        step._fused = {}
    batch = _batch()
    torch.manual_seed(5)
    losses = [step(batch).loss for _ in range(steps)]
    return step, opt, losses


@pytest.mark.parametrize("refeed", [0, 1])
def test_fast_step_with_fused_update_tracks_the_plain_one(monkeypatch, refeed) -> None:
    calls = []
    real = mirrored_sgd.sgd_groups

    def counting(groups):
        calls.append([(len(g.copied), len(g.plain)) for g in groups])
        real(groups)

    monkeypatch.setattr(mirrored_sgd, "sgd_groups", counting)
    torch.manual_seed(0)
    model = AutoEncoder(60, [16, 8], activation="selu", dropout=0.0)
    twin = copy.deepcopy(model)
    fused_step, fused_opt, fused_losses = _train(model, True, monkeypatch, refeed)
    # one call per update takes all 4 weights (decayed) and 4 biases (not: a second param
    # group) and writes the bf16 copies of the 4 matrices (the sparse products read the
    # first layer's too)
    assert calls == [[(4, 0), (0, 4)]] * (4 * (1 + refeed))
    calls.clear()
    plain_step, plain_opt, plain_losses = _train(twin, False, monkeypatch, refeed)
    assert fused_step._fused and not plain_step._fused and not calls
    # float rounding only (a fused multiply-add here and there); bf16 GEMMs amplify it a bit
    assert fused_losses == pytest.approx(plain_losses, rel=1e-3)
    for (name, a), (_, b) in zip(model.named_parameters(), twin.named_parameters(), strict=True):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-3, atol=1e-4, msg=name)
    # the optimizer state keeps SGD's layout: checkpoints cannot tell the paths apart
    state_a, state_b = fused_opt.state_dict()["state"], plain_opt.state_dict()["state"]
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        a, b = state_a[key]["momentum_buffer"], state_b[key]["momentum_buffer"]
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)
    # every copy that will be read is the cast of its master
    mirror = fused_step.net._mirror
    for index, master in enumerate(mirror.masters):
        if not mirror.stale[index]:
            assert torch.equal(mirror.copies[index], master.to(torch.bfloat16))


def test_tied_models_and_all_reduce_keep_the_plain_path(monkeypatch) -> None:
    monkeypatch.setattr(mirrored_sgd, "MIN_NUMEL", 1)
    torch.manual_seed(0)
    tied = AutoEncoder(60, [16, 8], activation="selu", constrained=True)
    step = FastStep(
        tied, torch.optim.SGD(tied.parameters(), lr=0.01, momentum=0.9), precision="bf16"
    )
    assert step._fused == {}
    model = AutoEncoder(60, [16, 8], activation="selu")
    step = FastStep(
        model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9), precision="bf16"
    )
    seen = []
    step.before_update = lambda params: seen.extend(p.grad.dtype for p in params)
    step(_batch())
    assert seen and all(d == torch.float32 for d in seen)  # fp32 gradients reach the hook


def test_a_failed_compile_falls_back_to_the_same_eager_update(monkeypatch) -> None:
    def broken():
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(mirrored_sgd.UPDATE_KERNEL, "compiled", broken)
    monkeypatch.setattr(mirrored_sgd.UPDATE_KERNEL, "failed", False)
    gen = torch.Generator().manual_seed(1)
    w, m = torch.randn(8, 4, generator=gen), torch.randn(8, 4, generator=gen)
    g = torch.randn(8, 4, generator=gen)
    low = torch.empty(8, 4, dtype=torch.bfloat16)
    w2, m2, low2 = w.clone(), m.clone(), low.clone()
    mirrored_sgd.sgd_and_copy(w, m, g, low, 0.1, 0.9, 0.01)
    mirrored_sgd.eager_sgd_and_copy(w2, m2, g, low2, 0.1, 0.9, 0.01)
    assert mirrored_sgd.UPDATE_KERNEL.failed
    assert torch.equal(w, w2) and torch.equal(m, m2) and torch.equal(low, low2)
