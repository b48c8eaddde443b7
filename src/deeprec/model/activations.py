"""Activation functions by the names the paper and the configs use."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from deeprec.errors import ConfigError

Activation = Callable[[torch.Tensor], torch.Tensor]

ACTIVATIONS: dict[str, Activation] = {
    "sigmoid": torch.sigmoid,
    "relu": F.relu,
    "relu6": F.relu6,
    "tanh": torch.tanh,
    "elu": F.elu,
    "lrelu": F.leaky_relu,
    "selu": F.selu,
    "swish": F.silu,
    "identity": lambda x: x,
}


def get_activation(name: str) -> Activation:
    try:
        return ACTIVATIONS[name]
    except KeyError:
        known = ", ".join(sorted(ACTIVATIONS))
        raise ConfigError(f"unknown activation {name!r}; choose one of {known}") from None
