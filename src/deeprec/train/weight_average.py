"""An exponential moving average of a model's weights (`ema_decay`), the model that
validation reads and training keeps. Averaging damps the step-to-step noise of input dropout
and large full-batch steps without another model to blend: the result is one set of weights.
The averaging itself is torch.optim.swa_utils'.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from deeprec.model.autoencoder import AutoEncoder


class WeightAverage:
    """avg = decay * avg + (1 - decay) * weights after every step; buffers are copied (they
    hold derived state such as the global kernel, not learned weights)."""

    def __init__(self, model: AutoEncoder, decay: float) -> None:
        self.averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay))

    @property
    def module(self) -> AutoEncoder:
        return self.averaged.module  # type: ignore[return-value]

    @torch.no_grad()
    def update(self, model: AutoEncoder) -> None:
        self.averaged.update_parameters(model)
        for mine, theirs in zip(self.module.buffers(), model.buffers(), strict=True):
            mine.copy_(theirs)

    def state_dict(self) -> dict[str, Any]:
        """The averaged weights and how many steps they average (for checkpoints)."""
        return {
            "module": self.module.state_dict(),
            "n_averaged": self.averaged.n_averaged.detach().clone(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.averaged.n_averaged.copy_(state["n_averaged"])
