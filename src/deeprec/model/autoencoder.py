"""The deep autoencoder of Kuchaiev & Ginsburg (2017).

n -> hidden[0] -> ... -> hidden[-1] (the code) -> mirrored decoder -> n. Weights are stored
as (out, in) matrices with Xavier-uniform initialisation and zero biases, as in the
reference code. With ``constrained=True`` the decoder reuses the encoder matrices
transposed (W_d = W_e^T, same storage); biases are never shared.

``input_row_scale`` = c > 0 multiplies each input row by c / sqrt(its number of non-zero
entries) before the first layer (0 = off, the default). Why: with raw ratings the first
layer's input grows with how many ratings a row has; the scaled model errs differently from
the unscaled one and blends well with it on ML-100K (docs/results/model-tuning.md, round 3).

``rated_indicator=True`` adds a second input channel, 1(x != 0), with its own (hidden[0], n)
matrix (``indicator_weight``, Xavier-initialised, decayed like the other matrices): the
first layer computes W x + W_r 1(x != 0) + b. Why: with centred inputs (center="bias") a
missing entry and an average rating are both 0, so the network no longer sees *which* rows
rated; the indicator gives that back.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from deeprec.errors import ConfigError
from deeprec.model.activations import get_activation

DROPOUT_PLACEMENTS = ("code", "all", "none")


class AutoEncoder(nn.Module):
    """Encoder/decoder stack over dense rating vectors (batch, n_inputs)."""

    def __init__(
        self,
        n_inputs: int,
        hidden: Sequence[int],
        *,
        activation: str = "selu",
        last_activation: str = "identity",
        dropout: float = 0.0,
        dropout_placement: str = "code",
        constrained: bool = False,
        input_row_scale: float = 0.0,
        rated_indicator: bool = False,
    ) -> None:
        super().__init__()
        hidden = [int(h) for h in hidden]
        if n_inputs <= 0:
            raise ConfigError(f"the autoencoder needs at least one input, got {n_inputs}")
        if not hidden or any(h <= 0 for h in hidden):
            raise ConfigError(f"hidden must be a non-empty list of positive sizes, got {hidden}")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {dropout}")
        if dropout_placement not in DROPOUT_PLACEMENTS:
            raise ConfigError(
                f"dropout_placement must be one of {', '.join(DROPOUT_PLACEMENTS)}, "
                f"got {dropout_placement!r}"
            )
        if not (math.isfinite(input_row_scale) and input_row_scale >= 0.0):
            raise ConfigError(f"input_row_scale must be >= 0 (0 = off), got {input_row_scale}")
        self.n_inputs = int(n_inputs)
        self.input_row_scale = float(input_row_scale)
        self.hidden = hidden
        self.activation_name = activation
        self.last_activation_name = last_activation
        self.act = get_activation(activation)
        self.last_act = get_activation(last_activation)
        self.dropout = float(dropout)
        self.dropout_placement = dropout_placement
        self.constrained = bool(constrained)

        sizes = [self.n_inputs, *hidden]
        self.encoder_weights = nn.ParameterList(
            nn.Parameter(torch.empty(sizes[i + 1], sizes[i])) for i in range(len(hidden))
        )
        self.encoder_biases = nn.ParameterList(
            nn.Parameter(torch.zeros(sizes[i + 1])) for i in range(len(hidden))
        )
        rev = list(reversed(sizes))
        if self.constrained:
            self.decoder_weights = nn.ParameterList()
        else:
            self.decoder_weights = nn.ParameterList(
                nn.Parameter(torch.empty(rev[i + 1], rev[i])) for i in range(len(hidden))
            )
        self.decoder_biases = nn.ParameterList(
            nn.Parameter(torch.zeros(rev[i + 1])) for i in range(len(hidden))
        )
        self.rated_indicator = bool(rated_indicator)
        self.indicator_weight: nn.Parameter | None = None
        if self.rated_indicator:
            self.indicator_weight = nn.Parameter(torch.empty(sizes[1], sizes[0]))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for weight in (*self.encoder_weights, *self.decoder_weights):
            nn.init.xavier_uniform_(weight)
        for bias in (*self.encoder_biases, *self.decoder_biases):
            nn.init.zeros_(bias)
        if self.indicator_weight is not None:  # last: the other draws stay as without it
            nn.init.xavier_uniform_(self.indicator_weight)

    def decoder_weight(self, i: int) -> torch.Tensor:
        """Decoder layer i's (out, in) matrix; a transposed view of the encoder's when tied."""
        if self.constrained:
            return self.encoder_weights[len(self.hidden) - 1 - i].t()
        return self.decoder_weights[i]

    def _drop(self, x: torch.Tensor, is_code: bool) -> torch.Tensor:
        if self.dropout == 0.0 or self.dropout_placement == "none":
            return x
        if self.dropout_placement == "code" and not is_code:
            return x
        return F.dropout(x, p=self.dropout, training=self.training)

    def scale_inputs(self, x: torch.Tensor) -> torch.Tensor:
        """Dense rows times input_row_scale / sqrt(non-zeros per row) (identity when 0)."""
        if self.input_row_scale == 0.0:
            return x
        counts = (x != 0).sum(dim=1, keepdim=True).clamp_min(1).to(x.dtype)
        return x * (self.input_row_scale / counts.sqrt())

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        rated = (x != 0).to(x.dtype) if self.indicator_weight is not None else None
        x = self.scale_inputs(x)
        n_layers = len(self.hidden)
        for i, (w, b) in enumerate(zip(self.encoder_weights, self.encoder_biases, strict=True)):
            z = F.linear(x, w, b)
            if i == 0 and rated is not None:
                z = z + F.linear(rated, self.indicator_weight)
            x = self.act(z)
            x = self._drop(x, is_code=i == n_layers - 1)
        return x

    def decode_hidden(self, z: torch.Tensor) -> torch.Tensor:
        """All decoder layers but the last (the output layer), activated."""
        for i in range(len(self.hidden) - 1):
            z = self.act(F.linear(z, self.decoder_weight(i), self.decoder_biases[i]))
            z = self._drop(z, is_code=False)
        return z

    def output_layer(self) -> tuple[torch.Tensor, torch.Tensor]:
        last = len(self.hidden) - 1
        return self.decoder_weight(last), self.decoder_biases[last]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        w, b = self.output_layer()
        return self.last_act(F.linear(self.decode_hidden(z), w, b))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def architecture(self) -> str:
        """The paper's notation, e.g. 'n,512,512,1024,dp0.8,512,512,n'."""
        enc = ",".join(str(h) for h in self.hidden)
        dec = ",".join(str(h) for h in reversed(self.hidden[:-1]))
        dp = f",dp{self.dropout:g}" if self.dropout else ""
        if self.rated_indicator:
            return (
                f"{self.n_inputs}+rated,{enc}{dp}"
                + (f",{dec}" if dec else "")
                + f",{self.n_inputs}"
            )
        return f"{self.n_inputs},{enc}{dp}" + (f",{dec}" if dec else "") + f",{self.n_inputs}"
