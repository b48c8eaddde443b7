"""Choosing a model on validation: fit the candidates, keep the one with the lowest
validation RMSE (clipped, on the rating scale: the one number every candidate shares).

The search is bounded: three first-round candidates, then L2 steps of 3x around each of
the two best (x3 and /3, and one step further the way that gained), at most
MAX_CANDIDATES (8) fits in all.
Both families get their L2 searched because the first round compares them at one L2 each,
and the best L2 moves a lot between data sets (issue 18: about 300-fold). The winner is
kept as fitted; at prediction time it reads the validation ratings as inputs (DeepRec's
`predict_inputs`/`predict_center`), and DeepRec's default `refit=None` then retrains it on
train + validation for its best epoch count: better on test than the early-stopped winner
on every set of docs/results/generalization.md (issue 18's first look had found it less
reliable on one set of its own).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from deeprec.selection.candidates import (
    L2_STEP,
    MAX_CANDIDATES,
    MAX_L2_STEPS,
    SEARCHED_FAMILIES,
    first_round,
    with_l2,
)


@dataclass
class Trial:
    name: str
    settings: dict[str, Any]
    valid_rmse: float
    best_epoch: int | None
    seconds: float


@dataclass
class SelectionReport:
    """What was tried, how each did, and why the winner won (stored in the run directory
    as selection.json and on the fitted estimator as `selection_`)."""

    trials: list[Trial] = field(default_factory=list)
    winner: str | None = None
    reason: str = ""
    pinned: dict[str, Any] = field(default_factory=dict)
    valid_source: str = ""

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["candidate_seconds"] = [t.seconds for t in self.trials]
        return out

    def lines(self) -> list[str]:
        """Human-readable summary, one line per trial, then the verdict."""
        out = [f"model selection on {self.valid_source}:"]
        for t in self.trials:
            mark = "*" if t.name == self.winner else " "
            s = t.settings
            out.append(
                f" {mark} {t.name:<22} valid RMSE {t.valid_rmse:.4f}  (epoch {t.best_epoch}, "
                f"{t.seconds:.1f} s; {s['orientation']}-based, center {s['center']}, "
                f"L2 {s['weight_decay']:.3g})"
            )
        out.append(f"chosen: {self.winner} ({self.reason})")
        return out


FitFn = Callable[[dict[str, Any]], Any]  # settings -> fitted estimator (best_valid_rmse_)


def select(
    fit: FitFn,
    pinned: dict[str, Any],
    *,
    valid_source: str,
    echo: Callable[[str], None] | None = None,
) -> tuple[Any, SelectionReport]:
    """Fit the candidates under `pinned` and return (winning fitted model, report)."""
    report = SelectionReport(pinned=dict(pinned), valid_source=valid_source)
    best: tuple[Trial, Any] | None = None

    def run(name: str, settings: dict[str, Any]) -> Trial | None:
        """Fit and record one candidate; None once MAX_CANDIDATES have been fitted."""
        nonlocal best
        if len(report.trials) >= MAX_CANDIDATES:
            return None
        started = time.perf_counter()
        model = fit(settings)
        score = model.best_valid_rmse_
        trial = Trial(
            name,
            settings,
            float("inf") if score is None else float(score),
            model.best_epoch_,
            round(time.perf_counter() - started, 2),
        )
        report.trials.append(trial)
        if echo is not None:
            echo(
                f"  tried {name}: valid RMSE {trial.valid_rmse:.4f} "
                f"(best epoch {trial.best_epoch}, {trial.seconds:.1f} s)"
            )
        if best is None or trial.valid_rmse < best[0].valid_rmse:
            best = (trial, model)
        return trial

    for name, settings in first_round(pinned).items():
        run(name, settings)  # at most 3: always within the budget
    assert best is not None
    if "weight_decay" not in pinned:
        for centre in sorted(report.trials, key=lambda t: t.valid_rmse)[:SEARCHED_FAMILIES]:
            _search_l2(run, centre)
    trial, model = best
    report.winner = trial.name
    report.reason = _reason(report.trials, trial)
    return model, report


def _search_l2(run: Callable[[str, dict[str, Any]], Trial | None], centre: Trial) -> None:
    """Try L2 x3 and /3 of `centre`; then step further the way that beat it, while it gains
    (at most MAX_L2_STEPS more); every fit only while the candidate budget lasts."""
    up = run(f"{centre.name} L2x{L2_STEP:g}", with_l2(centre.settings, L2_STEP))
    down = run(f"{centre.name} L2/{L2_STEP:g}", with_l2(centre.settings, 1 / L2_STEP))
    tried = [(t, f) for t, f in ((up, L2_STEP), (down, 1 / L2_STEP)) if t is not None]
    if not tried:
        return
    step, factor = min(tried, key=lambda p: p[0].valid_rmse)
    if step.valid_rmse >= centre.valid_rmse:
        return
    for k in range(MAX_L2_STEPS):
        name = f"{centre.name} L2{'x' if factor > 1 else '/'}{L2_STEP ** (k + 2):g}"
        nxt = run(name, with_l2(step.settings, factor))
        if nxt is None or nxt.valid_rmse >= step.valid_rmse:
            break
        step = nxt


def _reason(trials: list[Trial], winner: Trial) -> str:
    others = sorted(t.valid_rmse for t in trials if t is not winner)
    if not others:
        return "the only candidate left by the explicit settings"
    return (
        f"lowest validation RMSE, {winner.valid_rmse:.4f} against {others[0]:.4f} for the "
        f"runner-up, among {len(trials)} candidates"
    )
