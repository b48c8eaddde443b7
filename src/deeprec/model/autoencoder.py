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

``weight_kernel_dim`` = d > 0 kernelises every weight matrix (Muller et al. 2018, "Kernelized
Synaptic Weight Matrices", the layer GLocal-K pre-trains): each layer learns a d-vector per
input unit (u_i) and per output unit (v_j) and uses W_eff = W * K with K[j, i] =
max(0, 1 - ||v_j - u_i||^2), so K is in [0, 1] and a connection whose vectors drift apart
by 1 or more is exactly zero. The vectors start near 0 (K ~ 1, W_eff ~ W); training with a
penalty on ||K||^2 (TrainConfig.kernel_sparsity) prunes connections. 0 = off (the default).
Every read of a weight matrix goes through `encoder_weight(i)` / `decoder_weight(i)`, which
return the effective matrices.

``global_kernel`` = k > 0 (odd) with ``n_rows`` adds GLocal-K's global kernel
(model/global_kernel.py): a learned (n_rows, k*k) matrix ``global_pool`` that turns the
per-row mean of the model's own reconstruction into a k x k convolution kernel, and the
buffer ``global_kernel_matrix``, the kernel the fine-tuned model was selected with (saved
with the weights; predictions read the rating matrix convolved with it). The forward pass
itself is unchanged: the convolution needs neighbouring rows, so the caller applies it
(train/global_finetune.py, the estimator). 0 = off (the default).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from deeprec.errors import ConfigError
from deeprec.model.activations import get_activation

DROPOUT_PLACEMENTS = ("code", "all", "none")


class LayerPlan(NamedTuple):
    """One layer as the hand-written steps walk the network (step/fast.py, step/graph.py):
    the stored matrix (the encoder's, transposed, when the decoder is tied), bias,
    activation and the dropout rate applied after it."""

    weight: nn.Parameter
    transposed: bool
    bias: nn.Parameter
    activation_name: str
    dropout: float
    last: bool  # the output layer


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
        weight_kernel_dim: int = 0,
        global_kernel: int = 0,
        n_rows: int = 0,
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
        if isinstance(weight_kernel_dim, bool) or int(weight_kernel_dim) != weight_kernel_dim:
            raise ConfigError(f"weight_kernel_dim must be an integer, got {weight_kernel_dim!r}")
        if weight_kernel_dim < 0:
            raise ConfigError(f"weight_kernel_dim must be >= 0 (0 = off), got {weight_kernel_dim}")
        if weight_kernel_dim > 0 and constrained:
            raise ConfigError(
                "weight_kernel_dim cannot be combined with constrained (tied) weights"
            )
        if isinstance(global_kernel, bool) or int(global_kernel) != global_kernel:
            raise ConfigError(f"global_kernel must be an integer, got {global_kernel!r}")
        if global_kernel < 0 or (global_kernel > 0 and global_kernel % 2 == 0):
            raise ConfigError(f"global_kernel must be 0 (off) or an odd size, got {global_kernel}")
        if global_kernel > 0 and int(n_rows) <= 0:
            raise ConfigError("global_kernel needs n_rows, the number of rows of the matrix")
        self.weight_kernel_dim = int(weight_kernel_dim)
        self.global_kernel = int(global_kernel)
        self.n_rows = int(n_rows) if global_kernel else 0
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
        # kernel vectors per layer: (in, d) for the input units, (out, d) for the output units
        d = self.weight_kernel_dim
        n_kernels = len(hidden) if d > 0 else 0
        self.encoder_kernels_in = nn.ParameterList(
            _kernel_vectors(sizes[i], d) for i in range(n_kernels)
        )
        self.encoder_kernels_out = nn.ParameterList(
            _kernel_vectors(sizes[i + 1], d) for i in range(n_kernels)
        )
        self.decoder_kernels_in = nn.ParameterList(
            _kernel_vectors(rev[i], d) for i in range(n_kernels)
        )
        self.decoder_kernels_out = nn.ParameterList(
            _kernel_vectors(rev[i + 1], d) for i in range(n_kernels)
        )
        self.global_pool: nn.Parameter | None = None
        if self.global_kernel:
            self.global_pool = nn.Parameter(torch.empty(self.n_rows, self.global_kernel**2))
            self.global_pool.deeprec_no_decay = True  # GLocal-K does not decay it
            self.register_buffer(
                "global_kernel_matrix", torch.zeros(self.global_kernel, self.global_kernel)
            )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for weight in (*self.encoder_weights, *self.decoder_weights):
            nn.init.xavier_uniform_(weight)
        for bias in (*self.encoder_biases, *self.decoder_biases):
            nn.init.zeros_(bias)
        if self.indicator_weight is not None:  # last: the other draws stay as without it
            nn.init.xavier_uniform_(self.indicator_weight)
        for vectors in self.kernel_vectors():  # after everything else, for the same reason
            nn.init.trunc_normal_(vectors, 0.0, 1e-3, -2e-3, 2e-3)
        if self.global_pool is not None:  # last again; GLocal-K's initialisation
            nn.init.trunc_normal_(self.global_pool, 0.0, 0.1, -0.2, 0.2)

    def kernel_vectors(self) -> list[nn.Parameter]:
        """The learned kernel vectors (empty when weight_kernel_dim is 0)."""
        return [
            *self.encoder_kernels_in,
            *self.encoder_kernels_out,
            *self.decoder_kernels_in,
            *self.decoder_kernels_out,
        ]

    def kernels(self) -> list[torch.Tensor]:
        """Every layer's kernel matrix K (out, in), encoder layers then decoder layers."""
        if self.weight_kernel_dim == 0:
            return []
        return [
            weight_kernel(u, v)
            for u, v in zip(
                [*self.encoder_kernels_in, *self.decoder_kernels_in],
                [*self.encoder_kernels_out, *self.decoder_kernels_out],
                strict=True,
            )
        ]

    def encoder_weight(self, i: int) -> torch.Tensor:
        """Encoder layer i's effective (out, in) matrix (W * K when kernelised)."""
        w = self.encoder_weights[i]
        if self.weight_kernel_dim:
            w = w * weight_kernel(self.encoder_kernels_in[i], self.encoder_kernels_out[i])
        return w

    def decoder_weight(self, i: int) -> torch.Tensor:
        """Decoder layer i's effective (out, in) matrix; a transposed view of the encoder's
        when tied; W * K when kernelised."""
        if self.constrained:
            return self.encoder_weights[len(self.hidden) - 1 - i].t()
        w = self.decoder_weights[i]
        if self.weight_kernel_dim:
            w = w * weight_kernel(self.decoder_kernels_in[i], self.decoder_kernels_out[i])
        return w

    def layer_plan(self) -> list[LayerPlan]:
        """Encoder then decoder layers, with the dropout that `forward` applies after each
        in training (the code layer's, every hidden layer's with placement "all")."""
        n_hidden = len(self.hidden)
        drop = self.dropout if self.dropout_placement != "none" else 0.0
        plan = []
        for i in range(n_hidden):
            code = i == n_hidden - 1
            p = drop if (self.dropout_placement == "all" or code) else 0.0
            weight, bias = self.encoder_weights[i], self.encoder_biases[i]
            plan.append(LayerPlan(weight, False, bias, self.activation_name, p, False))
        for i in range(n_hidden):
            last = i == n_hidden - 1
            if self.constrained:
                weight, transposed = self.encoder_weights[n_hidden - 1 - i], True
            else:
                weight, transposed = self.decoder_weights[i], False
            p = drop if (self.dropout_placement == "all" and not last) else 0.0
            name = self.last_activation_name if last else self.activation_name
            plan.append(LayerPlan(weight, transposed, self.decoder_biases[i], name, p, last))
        return plan

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
        for i, b in enumerate(self.encoder_biases):
            z = F.linear(x, self.encoder_weight(i), b)
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
        if self.weight_kernel_dim:
            dp += f",kernel{self.weight_kernel_dim}"
        if self.global_kernel:
            dp += f",global{self.global_kernel}x{self.global_kernel}"
        if self.rated_indicator:
            return (
                f"{self.n_inputs}+rated,{enc}{dp}"
                + (f",{dec}" if dec else "")
                + f",{self.n_inputs}"
            )
        return f"{self.n_inputs},{enc}{dp}" + (f",{dec}" if dec else "") + f",{self.n_inputs}"


def _kernel_vectors(n: int, d: int) -> nn.Parameter:
    vectors = nn.Parameter(torch.empty(n, d))
    vectors.deeprec_no_decay = True  # weight_decay is for the matrices (train/optim.py)
    return vectors


def weight_kernel(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """K[j, i] = max(0, 1 - ||v_j - u_i||^2) for input vectors u (in, d) and output vectors
    v (out, d): an (out, in) matrix in [0, 1], exactly 0 where the distance is 1 or more."""
    dist2 = (v * v).sum(1, keepdim=True) + (u * u).sum(1) - 2.0 * (v @ u.t())
    return (1.0 - dist2).clamp_min(0.0)
