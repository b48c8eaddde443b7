"""The fixed, documented candidates that `DeepRec()` chooses among on the user's own data.

Two model families, each known to win on some shapes of data (docs/results/generalization.md):

- ``user-deep``: the paper's user-based autoencoder (256-256 SELU, dropout 0.5 on the code,
  Adam 1e-3, mini-batches of 128 users), centred on a bias baseline. It serves new users
  without retraining.
- ``item-wide``: an item-based I-AutoRec-style model (one layer of 500 sigmoid units, Adam
  1e-2, 4,096 items a batch), either centred or on standardised raw ratings. Half of each
  input row is dropped in training (``input_dropout: 0.5``), and once early stopping ends
  the first phase a second one runs at a tenth of the learning rate from the best weights
  (``finetune_epochs``, ``finetune_lr``), kept only if it gains on validation. The two go
  together: on ml-latest-small's item-wide-raw they gained 0.020 (input dropout) and 0.006
  (second phase) on validation alone, 0.033 both, and took the defaults' test RMSE there
  from 0.8442 to 0.8253 (3 seeds; docs/results/single_model.md, round 4 part 2).

Every candidate standardises what the network sees (``standardize: true``), so learning rate,
L2 and initialisation mean the same on any rating scale. L2 (``weight_decay``) is then
searched in steps of 3x around the two best first-round candidates, because the best
strength moves a lot between data sets.
"""

from __future__ import annotations

from typing import Any

# The keys a candidate sets; a DeepRec keyword left at None is chosen among these values.
SEARCHED_KEYS = (
    "hidden",
    "activation",
    "dropout",
    "orientation",
    "center",
    "optimizer",
    "lr",
    "weight_decay",
    "batch_size",
    "epochs",
    "early_stopping",
    "input_dropout",
    "finetune_epochs",
    "finetune_lr",
)

USER_DEEP: dict[str, Any] = {
    "hidden": [256, 256],
    "activation": "selu",
    "dropout": 0.5,
    "orientation": "user",
    "center": "bias",
    "optimizer": "adam",
    "lr": 0.001,
    "weight_decay": 0.01,
    "batch_size": 128,
    "epochs": 60,
    "early_stopping": 8,
    "input_dropout": 0.0,
    "finetune_epochs": 0,
    "finetune_lr": 0.0,
}

ITEM_WIDE: dict[str, Any] = {
    "hidden": [500],
    "activation": "sigmoid",
    "dropout": 0.0,
    "orientation": "item",
    "center": "bias",
    "optimizer": "adam",
    "lr": 0.01,
    "weight_decay": 0.0015,
    "batch_size": 4096,
    "epochs": 300,
    "early_stopping": 25,
    "input_dropout": 0.5,
    "finetune_epochs": 300,
    "finetune_lr": 0.001,
}

# The first round: one candidate per family and centring.
FIRST_ROUND: dict[str, dict[str, Any]] = {
    "user-deep": USER_DEEP,
    "item-wide": ITEM_WIDE,
    "item-wide-raw": {**ITEM_WIDE, "center": "none"},
}
L2_STEP = 3.0  # weight_decay is tried at x3 and /3, then further while it gains
MAX_L2_STEPS = 1  # at most this many steps beyond the first neighbour, in one direction
SEARCHED_FAMILIES = 2  # the L2 search runs around this many of the best first-round fits
# Candidate fits at most. With the refit (about one more fit) the whole default fit stays
# within ~9 candidate fits (issue 18 bounds it at 10x one candidate). The full search could
# take 9; its 9th fit, the runner-up family's last L2 step, won on none of the 9 sets of
# docs/results/generalization.md.
MAX_CANDIDATES = 8


def needs_selection(assignments: list[str]) -> bool:
    """Whether `key=value` settings (e.g. from --set) leave the model to be chosen: none
    of them sets a searched key (any one pins the whole model, as in DeepRec)."""
    given = {a.partition("=")[0].strip() for a in assignments}
    return not set(SEARCHED_KEYS) & given


def candidate(base: dict[str, Any], pinned: dict[str, Any]) -> dict[str, Any]:
    """A candidate's settings with the user's explicit values on top."""
    return {**base, **pinned}


def first_round(pinned: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The first-round candidates under the user's pins, without duplicates (pinning
    `orientation: user` leaves one family; pinning everything leaves one candidate)."""
    out: dict[str, dict[str, Any]] = {}
    seen: list[dict[str, Any]] = []
    for name, base in FIRST_ROUND.items():
        settings = candidate(base, pinned)
        if "orientation" in pinned and pinned["orientation"] != base["orientation"]:
            continue  # the other family's settings do not transfer to this orientation
        if settings not in seen:
            seen.append(settings)
            out[name] = settings
    if not out:  # every family excluded: the pins alone, on the user-based defaults
        out["pinned"] = candidate(USER_DEEP, pinned)
    return out


def with_l2(settings: dict[str, Any], factor: float) -> dict[str, Any]:
    return {**settings, "weight_decay": settings["weight_decay"] * factor}
