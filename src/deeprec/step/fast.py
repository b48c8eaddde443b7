"""The fast training step: same loss and gradients as `reference_step`, less work.

What differs from the reference (NVIDIA's) procedure, and why it is the same math:
- The first layer reads the sparse batch with `embedding_bag` (S @ W1^T) instead of a dense
  (batch x n) matmul; its weight gradient S^T @ G is an `embedding_bag` too. For this the
  first encoder weight is stored input-major (its transpose is contiguous): same shape, same
  values, same state_dict, only the memory order differs.
- The loss needs the outputs at observed entries only, so the output layer is computed by one
  of four strategies, set in the config or picked per batch by a fixed cost model of the
  batch's shape (step/planner.py, never timings): `dense` (reference GEMMs), `sparse`
  (dense forward GEMM, backward as two `embedding_bag`s over the observed entries), `union`
  (GEMMs on the batch's distinct columns only) or `gather` (one compiled dot product per
  observed rating, then the same backward as `sparse`; kernels/gather_dot.py). With
  re-feeding the dense f(x) is the next input, so only strategies with a dense forward are
  eligible.
- Forward and backward are written out by hand (no autograd graph): activation gradients use
  the fused ATen backward kernels, dropout noise is drawn exactly like `F.dropout` (same
  generator calls, same shapes), the loss and its gradient are one pass over the nnz values.
- precision="bf16": GEMMs read persistent bf16 copies of the weights, re-cast at most once
  after every optimizer step and only if read (`WeightMirror`); fp32 master weights, fp32
  bias/activations/loss. The sparse products (`embedding_bag`) and `gather` read the bf16
  copies too and accumulate in fp32. Gradients from bf16 GEMMs and bags are rounded to bf16.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn
from torch.profiler import record_function

from deeprec.data.batching import RowBatch
from deeprec.errors import ConfigError
from deeprec.kernels import cpu_gemm, gather_dot, mirrored_sgd, refeed_loss
from deeprec.kernels.dropout_noise import dropout_noise
from deeprec.kernels.precision import WeightMirror, low_precision_dtype
from deeprec.model.autoencoder import AutoEncoder
from deeprec.step.planner import OUTPUT_STRATEGIES, Planner
from deeprec.step.reference import StepResult
from deeprec.step.sparse_ops import (
    column_sums,
    row_scaled_values,
    sparse_cols_matmul,
    sparse_rows_matmul,
)

_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946
_aten = torch.ops.aten


def activation_backward(name: str, grad: torch.Tensor, z: torch.Tensor, y: torch.Tensor):
    """d act(z) / dz applied to grad, with y = act(z), using ATen's fused backward kernels."""
    if name == "identity":
        return grad
    if name == "relu":
        return _aten.threshold_backward(grad, y, 0)
    if name == "relu6":
        return _aten.hardtanh_backward(grad, z, 0.0, 6.0)
    if name == "sigmoid":
        return _aten.sigmoid_backward(grad, y)
    if name == "tanh":
        return _aten.tanh_backward(grad, y)
    if name == "elu":
        return _aten.elu_backward(grad, 1.0, 1, 1, True, y)
    if name == "selu":
        return _aten.elu_backward(grad, _SELU_ALPHA, _SELU_SCALE, 1, True, y)
    if name == "lrelu":
        return _aten.leaky_relu_backward(grad, z, 0.01, False)
    if name == "swish":
        return _aten.silu_backward(grad, z)
    raise ConfigError(f"no fast backward for activation {name!r}")


def use_input_major_first_layer(model: AutoEncoder) -> None:
    """Store encoder_weights[0] (shape (h1, n)) so that its transpose (n, h1) is contiguous.

    Values, shape and state_dict keys are unchanged; state_dict() returns contiguous tensors
    (a hook), so checkpoints and safetensors files look exactly as before.
    """
    weight = model.encoder_weights[0]
    if not weight.t().is_contiguous():
        with torch.no_grad():
            weight.data = weight.data.t().contiguous().t()
    if not getattr(model, "_deeprec_contiguous_state", False):
        model._register_state_dict_hook(_contiguous_state_dict)
        model._deeprec_contiguous_state = True


def _contiguous_state_dict(module, state_dict, prefix, local_metadata):
    for key, value in state_dict.items():
        # keep_vars=True callers (jit tracing, ONNX export) want the live Parameters: leave them.
        if isinstance(value, nn.Parameter):
            continue
        if isinstance(value, torch.Tensor) and not value.is_contiguous():
            state_dict[key] = value.contiguous()
    return state_dict


def _accumulate(store: dict[int, torch.Tensor], param: torch.Tensor, grad: torch.Tensor) -> None:
    """Add `grad` to param's entry (tied weights get two), or start it with `grad` itself."""
    key = id(param)
    if key in store:
        store[key].add_(grad)
    else:
        store[key] = grad


@dataclass
class _Layer:
    param: nn.Parameter  # weight parameter
    transposed: bool  # the layer's (out, in) matrix is param.t() (tied decoder)
    bias: nn.Parameter
    act: str
    dropout: float


@dataclass
class _Saved:
    """What the backward pass needs from the forward pass of one layer."""

    inp: torch.Tensor | None  # layer input (after the previous dropout); None for sparse input
    z: torch.Tensor
    y: torch.Tensor  # act(z), before dropout
    noise: torch.Tensor | None


class FastNet:
    """Hand-written forward/backward of an AutoEncoder over sparse batches (see module doc)."""

    def __init__(self, model: AutoEncoder, precision: str = "fp32") -> None:
        use_input_major_first_layer(model)
        self.model = model
        self.lowp = low_precision_dtype(precision)
        layers = [
            _Layer(spec.weight, spec.transposed, spec.bias, spec.activation_name, spec.dropout)
            for spec in model.layer_plan()
        ]
        self.layers = layers
        self.first = model.encoder_weights[0]
        self._params = list(dict.fromkeys(layer.param for layer in layers))
        self._mirror: WeightMirror | None = None
        self._mirror_index: dict[int, int] = {}
        if self.lowp is not None:
            masters = [self.storage(p) for p in self._params]
            self._mirror = WeightMirror(masters, self.lowp)
            self._mirror_index = {id(p): i for i, p in enumerate(self._params)}
        self._grads: dict[int, torch.Tensor] = {}
        self._bias_grads: dict[int, torch.Tensor] = {}
        # ids of weights whose gradient from a bf16 GEMM is kept in bf16: FastStep hands it
        # straight to the fused update (mirrored_sgd), which reads it with the weights
        self.low_precision_grads: set[int] = set()

    # ----------------------------------------------------------- layouts
    def stored_t(self, param: torch.Tensor) -> bool:
        return param is self.first

    def storage(self, param: torch.Tensor, low: bool = False) -> torch.Tensor:
        """The contiguous matrix holding param (param, or param.t() for the first layer)."""
        if low and self._mirror is not None:
            return self._mirror.get(self._mirror_index[id(param)])
        return param.t() if self.stored_t(param) else param

    def used(self, layer: _Layer, low: bool = False) -> torch.Tensor:
        """The layer's (out, in) matrix as a view of its storage."""
        s = self.storage(layer.param, low)
        return s if self.stored_t(layer.param) == layer.transposed else s.t()

    def _uses_storage_rows(self, layer: _Layer) -> bool:
        """True when the (out, in) matrix is its contiguous storage (rows = output units)."""
        return self.stored_t(layer.param) == layer.transposed

    def parameters(self) -> list[nn.Parameter]:
        """Every trained parameter, each once (tied weights included once)."""
        seen = {}
        for layer in self.layers:
            seen.setdefault(id(layer.param), layer.param)
            seen.setdefault(id(layer.bias), layer.bias)
        return list(seen.values())

    def out_width(self) -> int:
        """Width of the output layer's input (the last decoder hidden size)."""
        layer = self.layers[-1]
        return int(layer.param.shape[0 if layer.transposed else 1])

    @contextmanager
    def optimizer_layout(self) -> Iterator[None]:
        """During optimizer.step(), show the first weight as its contiguous (n, h1) storage.

        Fused optimizers copy non-contiguous tensors in and out (~3x the update's memory
        traffic); transposing the view costs nothing. Its optimizer state is therefore kept
        as (n, h1); `keep_optimizer_state_in_param_layout` converts on save/load."""
        p = self.first
        p.data = p.data.t()
        if p.grad is not None:
            p.grad = p.grad.t()
        try:
            yield
        finally:
            p.data = p.data.t()
            if p.grad is not None:
                p.grad = p.grad.t()

    def refresh(self) -> None:
        """Re-cast the bf16 weight copies after the optimizer changed the masters."""
        if self._mirror is not None:
            self._mirror.refresh()

    def low_precision_bags(self) -> bool:
        """bf16: the sparse products (embedding_bag) read the bf16 weight copies too.

        They accumulate in fp32 and round their output to bf16, as the bf16 GEMMs do, and
        halve the bytes of the widest reads and writes of a step (at Netflix scale ~25K
        weight rows gathered per product, 17,768 x 512 gradients written)."""
        return self.lowp is not None

    def _low_precision_grad(self, param: torch.Tensor) -> bool:
        """Whether a sparse product writes param's gradient in bf16 (the fused update reads
        it so; every other gradient stays fp32, e.g. tied weights summing two terms)."""
        return self.low_precision_bags() and id(param) in self.low_precision_grads

    # ---------------------------------------------------------- gradients
    def _add_grad(self, param: torch.Tensor, grad_storage: torch.Tensor) -> None:
        _accumulate(self._grads, param, grad_storage)

    def _add_bias_grad(self, bias: torch.Tensor, grad: torch.Tensor) -> None:
        _accumulate(self._bias_grads, bias, grad)

    def publish_grads(self) -> None:
        """Hand the accumulated gradients to the parameters (layout = the parameter's)."""
        for layer in self.layers:
            p = layer.param
            if id(p) in self._grads:
                g = self._grads.pop(id(p))
                if g.dtype != p.dtype:  # a kept bf16 gradient the fused update did not take
                    g = g.to(p.dtype)
                p.grad = g.t() if self.stored_t(p) else g
            b = layer.bias
            if id(b) in self._bias_grads:
                b.grad = self._bias_grads.pop(id(b))

    # ------------------------------------------------------ dense layers
    def _linear(self, h: torch.Tensor, layer: _Layer) -> torch.Tensor:
        if self.lowp is not None:
            w = self.used(layer, low=True)
            return torch.add(layer.bias, torch.mm(h.to(self.lowp), w.t()))
        return cpu_gemm.linear(h, self.used(layer), layer.bias)

    def _linear_backward(
        self,
        gz: torch.Tensor,
        h: torch.Tensor,
        layer: _Layer,
        need_input_grad: bool,
        bias_grad: torch.Tensor | None = None,
    ) -> torch.Tensor | None:
        """Accumulate the layer's gradients from gz (bf16 mode: gz may already be bf16 when
        `bias_grad`, its column sums, comes with it); returns the input gradient if asked."""
        self._add_bias_grad(layer.bias, gz.sum(0) if bias_grad is None else bias_grad)
        rows = self._uses_storage_rows(layer)
        if self.lowp is not None:
            gzl, hl = gz.to(self.lowp), h.to(self.lowp)
            gw = torch.mm(gzl.t(), hl) if rows else torch.mm(hl.t(), gzl)
            if id(layer.param) not in self.low_precision_grads:
                gw = gw.float()
            self._add_grad(layer.param, gw)
            if need_input_grad:  # bf16: the activation's backward reads it as fp32
                return torch.mm(gzl, self.used(layer, low=True))
            return None
        gw = torch.mm(gz.t(), h) if rows else torch.mm(h.t(), gz)
        self._add_grad(layer.param, gw)
        return cpu_gemm.matmul(gz, self.used(layer)) if need_input_grad else None

    # ----------------------------------------------------- hidden layers
    def _activate(self, z: torch.Tensor, layer: _Layer, train: bool) -> _Saved:
        """act(z) and its dropout noise, drawn as F.dropout draws it on this device."""
        y = self.model.act(z)
        noise = dropout_noise(y, layer.dropout) if train and layer.dropout > 0 else None
        return _Saved(inp=None, z=z, y=y, noise=noise)

    def _hidden_layer(
        self,
        product: torch.Tensor,
        bias: torch.Tensor | None,
        layer: _Layer,
        train: bool,
        out_dtype: torch.dtype,
    ) -> tuple[_Saved, torch.Tensor]:
        """(saved state, output after dropout in out_dtype) of a hidden layer from its
        product (bias added here when given)."""
        if bias is None:
            z = product
        elif product.dtype == bias.dtype:
            z = product.add_(bias)  # a fresh product: add in place
        else:
            z = torch.add(bias, product)  # bf16 product + fp32 bias -> fp32
        state = self._activate(z, layer, train)
        h = state.y if state.noise is None else state.y * state.noise
        return state, h if h.dtype == out_dtype else h.to(out_dtype)

    def _product(self, h: torch.Tensor, layer: _Layer) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(h @ W^T, bias still to add or None): fp32 adds the bias in the product; a bf16
        product comes without it (the fp32 bias is added with the activation)."""
        if self.lowp is not None:
            return torch.mm(h.to(self.lowp), self.used(layer, low=True).t()), layer.bias
        return cpu_gemm.linear(h, self.used(layer), layer.bias), None

    def hidden_forward(
        self,
        batch: RowBatch | None,
        dense: torch.Tensor | None,
        *,
        train: bool,
        input_strategy: str = "sparse",
        input_values: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, list[_Saved]]:
        """Encoder and decoder up to (not including) the output layer.

        Input is the sparse batch (first pass) or a dense matrix (re-feeding, `dense`).
        bf16: each layer's output is produced in bf16 for the next product, which reads it
        (and its weight gradient too); the last one stays fp32 for the output layer."""
        saved: list[_Saved] = []
        first = self.layers[0]
        if dense is None:
            assert batch is not None
            if input_strategy == "sparse":
                low = self.low_precision_bags()
                table = self.storage(first.param, low=low)
                product = sparse_rows_matmul(batch, table, input_values)
                bias = first.bias
                inp = None
            else:
                inp = _dense_input(batch, input_values, self.lowp or first.param.dtype)
                product, bias = self._product(inp, first)
        else:
            # bf16: cast the (batch x items) re-feed input once, for forward and backward
            inp = dense if self.lowp is None else dense.to(self.lowp)
            product, bias = self._product(inp, first)
        hidden = self.layers[:-1]
        for index, layer in enumerate(hidden):
            if index > 0:
                product, bias = self._product(inp, layer)
            if self.lowp is None:
                out_dtype = self.first.dtype
            else:  # the output layer reads the last hidden output in fp32
                out_dtype = torch.float32 if index == len(hidden) - 1 else self.lowp
            state, h = self._hidden_layer(product, bias, layer, train, out_dtype)
            state.inp = inp
            saved.append(state)
            inp = h
        return inp, saved

    def hidden_backward(
        self,
        gh: torch.Tensor,
        saved: list[_Saved],
        batch: RowBatch | None,
        input_values: torch.Tensor | None,
    ) -> None:
        for index in range(len(saved) - 1, -1, -1):
            layer, state = self.layers[index], saved[index]
            sparse_input = index == 0 and state.inp is None
            bias_grad = None
            if state.noise is not None:
                gh = gh * state.noise
            # a bf16 gh (bf16 products) is read as fp32 by the mixed-dtype kernels: the
            # values a .float() copy would give, one pass fewer
            gz = activation_backward(layer.act, gh, state.z, state.y)
            if gz.dtype != state.z.dtype:  # identity passes gh through
                gz = gz.to(state.z.dtype)
            if index > 0:
                gh = self._linear_backward(gz, state.inp, layer, True, bias_grad)
            elif not sparse_input:
                self._linear_backward(gz, state.inp, layer, False, bias_grad)
            else:  # sparse input: S^T @ gz in the input-major storage layout
                assert batch is not None
                self._add_bias_grad(layer.bias, gz.sum(0) if bias_grad is None else bias_grad)
                if self._low_precision_grad(layer.param):
                    gz = gz.to(self.lowp)  # bf16 rows in, bf16 gradient out
                self._add_grad(layer.param, sparse_cols_matmul(batch, gz, input_values))

    # ----------------------------------------------------- output layer
    def output_dense(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(z, act(z)) of the output layer over all columns."""
        out_layer = self.layers[-1]
        z = self._linear(h, out_layer)
        return z, self.model.last_act(z)

    def sparse_output_loss(
        self, h: torch.Tensor, batch: RowBatch, strategy: str, *, keep_dense: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Masked MSE at the observed entries; accumulates the output layer's gradients.

        Returns (gradient w.r.t. h, dense f(x) if keep_dense else None), and stores the loss
        terms in self.last_sse (a 0-d tensor: reading it waits for a GPU, so the step reads it
        after queueing its remaining work) / self.last_count."""
        layer = self.layers[-1]
        act_name = layer.act
        count = max(batch.nnz, 1)
        dense_out = None
        if strategy in ("dense", "sparse"):
            z, out = self.output_dense(h)
            dense_out = out
            flat = batch.flat_positions()  # one flat gather; identity output: out is z
            z_obs = z.reshape(-1).index_select(0, flat)
            y_obs = z_obs if out is z else out.reshape(-1).index_select(0, flat)
        elif strategy == "union":
            union, position = batch.column_union()
            w_sub = self.used(layer, low=self.lowp is not None)[union]
            hl = h if self.lowp is None else h.to(self.lowp)
            z_sub = torch.add(layer.bias[union], torch.mm(hl, w_sub.t()))
            z_obs = z_sub[batch.local, position]
            y_obs = self.model.last_act(z_obs)
        elif strategy == "gather":  # one dot product per rating (kernels/gather_dot.py)
            w = self.used(layer, low=self.lowp is not None)
            z_obs = gather_dot.observed_outputs(w, h, batch.cols, batch.local, layer.bias)
            y_obs = self.model.last_act(z_obs)
        else:
            raise ConfigError(f"unknown output strategy {strategy!r}; one of {OUTPUT_STRATEGIES}")
        diff = y_obs - batch.values.to(y_obs.dtype)
        self.last_sse = torch.dot(diff, diff)
        self.last_count = batch.nnz
        g_obs = activation_backward(act_name, diff * (2.0 / count), z_obs, y_obs)
        if strategy == "dense":
            g = torch.zeros_like(z)
            g[batch.local, batch.cols] = g_obs
            gh = self._linear_backward(g, h, layer, need_input_grad=True)
        elif strategy == "union":
            g = torch.zeros(h.shape[0], union.shape[0], dtype=g_obs.dtype, device=h.device)
            g[batch.local, position] = g_obs
            gh = self._union_backward(g, h, layer, union, w_sub)
        else:  # sparse and gather: backward touches only the observed entries
            gh = self._sparse_output_backward(g_obs, h, batch, layer)
        if not keep_dense:
            dense_out = None
        return gh, dense_out

    def _sparse_output_backward(
        self, g_obs: torch.Tensor, h: torch.Tensor, batch: RowBatch, layer: _Layer
    ) -> torch.Tensor:
        low = self.low_precision_bags()
        w = self.used(layer, low=low)  # rows = output columns (contiguous)
        self._add_bias_grad(layer.bias, column_sums(batch, g_obs))
        rows = h.to(self.lowp) if self._low_precision_grad(layer.param) else h
        weight_grad = sparse_cols_matmul(batch, rows, g_obs)
        self._add_grad(layer.param, self._in_storage(layer, weight_grad))
        return sparse_rows_matmul(batch, w, g_obs)  # bf16 if low: see hidden_backward

    def _union_backward(
        self, g: torch.Tensor, h: torch.Tensor, layer: _Layer, union: torch.Tensor, w_sub
    ) -> torch.Tensor:
        bias_grad = torch.zeros_like(layer.bias)
        bias_grad[union] = g.sum(0)
        self._add_bias_grad(layer.bias, bias_grad)
        if self.lowp is not None:
            gl, hl = g.to(self.lowp), h.to(self.lowp)
            sub = torch.mm(gl.t(), hl).float()
            gh = torch.mm(gl, w_sub).float()
        else:
            sub = torch.mm(g.t(), h)
            gh = torch.mm(g, w_sub)
        full = torch.zeros(layer.bias.shape[0], h.shape[1], dtype=sub.dtype, device=h.device)
        full[union] = sub
        self._add_grad(layer.param, self._in_storage(layer, full))
        return gh

    def _in_storage(self, layer: _Layer, grad_used: torch.Tensor) -> torch.Tensor:
        """A gradient w.r.t. the (out, in) matrix, in the parameter's storage layout."""
        if self._uses_storage_rows(layer):
            return grad_used
        return grad_used.t().contiguous()  # pragma: no cover - not produced by FastNet layouts

    def dense_output_backward(self, g: torch.Tensor, h: torch.Tensor, z, out) -> torch.Tensor:
        layer = self.layers[-1]
        gz = activation_backward(layer.act, g, z, out)
        return self._linear_backward(gz, h, layer, need_input_grad=True)

    def refeed_output_loss(
        self, h: torch.Tensor, y: torch.Tensor, keep_out: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The re-feed pass's output layer, dense loss against y and its backward:
        (gradient w.r.t. h, f(y) if keep_out). With an identity output, the loss gradient,
        bias gradient and bf16 cast are one pass (kernels/refeed_loss.py)."""
        layer = self.layers[-1]
        if layer.act != "identity":
            z, out = self.output_dense(h)
            g = (out - y).mul_(2.0 / out.numel())
            return self.dense_output_backward(g, h, z, out), (out if keep_out else None)
        if self.lowp is not None:
            hl = h.to(self.lowp)
            product = torch.mm(hl, self.used(layer, low=True).t())
            bias = layer.bias
        else:
            hl, bias = h, None
            product = cpu_gemm.linear(h, self.used(layer), layer.bias)
        out, bias_grad, g = refeed_loss.refeed_gradient(
            product, bias, y, keep_out=keep_out, low=self.lowp
        )
        gh = self._linear_backward(g, hl, layer, need_input_grad=True, bias_grad=bias_grad)
        return gh, out

    # ---------------------------------------------------------- inference
    @torch.no_grad()
    def predict(self, batch: RowBatch, input_strategy: str = "sparse") -> torch.Tensor:
        h, _ = self.hidden_forward(batch, None, train=False, input_strategy=input_strategy)
        return self.output_dense(h)[1]


def _dense_input(
    batch: RowBatch, values: torch.Tensor | None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    x = torch.zeros(batch.size, batch.n_cols, dtype=dtype, device=batch.values.device)
    x[batch.local, batch.cols] = (batch.values if values is None else values).to(dtype)
    return x


# ------------------------------------------------------------------ step
class FastStep:
    """Callable with reference_step's signature (minus model/optimizer), doing the fast math."""

    def __init__(
        self,
        model: AutoEncoder,
        optimizer: torch.optim.Optimizer,
        *,
        precision: str = "fp32",
        refeed_steps: int = 0,
        input_dropout: float = 0.0,
        output_strategy: str = "auto",
        input_strategy: str = "auto",
    ) -> None:
        if model.rated_indicator:
            raise ConfigError(
                "rated_indicator is implemented in the reference compute path only: "
                "set compute: reference"
            )
        if model.weight_kernel_dim:
            raise ConfigError(
                "weight_kernel_dim is implemented in the reference compute path only: "
                "set compute: reference"
            )
        self.net = FastNet(model, precision)
        self.optimizer = optimizer
        keep_optimizer_state_in_param_layout(optimizer, self.net.first)
        self.refeed_steps = refeed_steps
        self.input_dropout = input_dropout
        self.input_row_scale = model.input_row_scale
        if self.input_row_scale > 0 and refeed_steps > 0:
            raise ConfigError("input_row_scale cannot be combined with refeed_steps > 0")
        self.planner = Planner(
            self.net, refeed=refeed_steps > 0, output=output_strategy, inputs=input_strategy
        )
        # Called with every parameter's gradient set (all contiguous) right before each
        # optimizer step: the place for a distributed all-reduce. The fast path computes
        # gradients by hand, so DDP's autograd hooks never fire.
        self.before_update: Callable[[list[nn.Parameter]], None] | None = None
        # fixed for the step's life: which group (lr, momentum, decay) each parameter is in
        self._groups = {id(p): g for g in optimizer.param_groups for p in g["params"]}
        self._params = {id(p): p for p in self.net.parameters()}
        self._fused = self._fused_update_candidates(model)
        self.net.low_precision_grads = set(self._fused)

    def _fused_update_candidates(self, model: AutoEncoder) -> dict[int, tuple]:
        """bf16: the parameters whose SGD update also writes the matrices' bf16 copies, all
        in one mirrored_sgd.sgd_groups call per update: {id: (param, mirror index or None
        for a bias, param group)}. Tied weights take two gradient terms,
        which are summed in fp32, so a tied model keeps the plain path; so do models under
        MIN_NUMEL weights (compiling would cost more than it saves)."""
        mirror = self.net._mirror
        if mirror is None or model.constrained:
            return {}
        params = self.net.parameters()
        if sum(p.numel() for p in params) < mirrored_sgd.MIN_NUMEL:
            return {}
        found = {}
        for param in params:
            group = self._groups.get(id(param))
            if group is not None and mirrored_sgd.supported_group(self.optimizer, group):
                found[id(param)] = (param, self.net._mirror_index.get(id(param)), group)
        return found

    def weights_changed(self) -> None:
        """Call after the model's weights were replaced (checkpoint restore): refreshes the
        bf16 copies the step computes with."""
        self.net.refresh()

    def _update(self) -> None:
        net = self.net
        fused = self._take_fused() if self.before_update is None else ([], [])
        net.publish_grads()
        with net.optimizer_layout():
            if self.before_update is not None:  # (an all-reduce needs fp32 grads)
                self.before_update(net.parameters())
            self.optimizer.step()  # what the fused update left (also keeps LR schedulers'
            # "optimizer.step() was called" bookkeeping true)
        net.refresh()
        with record_function("deeprec::fused_update"):
            self._apply_fused(fused)

    def _take_fused(self) -> tuple[list[mirrored_sgd.Group], list[int]]:
        """Take the fused parameters' gradients, per param group, and the mirror indices
        of the copies the update will write; these params get no .grad, so
        optimizer.step() leaves them alone."""
        net = self.net
        groups: dict[int, mirrored_sgd.Group] = {}
        fresh: list[int] = []
        for key, (param, index, group) in self._fused.items():
            grads = net._grads if index is not None else net._bias_grads
            if key not in grads:
                continue
            param.grad = None
            master = net._mirror.masters[index] if index is not None else param.detach()
            entry = (master, self._momentum(param, master), grads.pop(key))
            options = (group["lr"], group["momentum"], group["weight_decay"])
            taken = groups.setdefault(id(group), mirrored_sgd.Group([], [], *options))
            # a copy never read (the sparse first layer's) is not worth writing
            if index is not None and net._mirror.read[index]:
                taken.copied.append((*entry, net._mirror.copies[index]))
                fresh.append(index)
            else:
                taken.plain.append(entry)
        return list(groups.values()), fresh

    def _apply_fused(self, fused: tuple[list[mirrored_sgd.Group], list[int]]) -> None:
        groups, fresh = fused
        if groups:
            mirrored_sgd.sgd_groups(groups)
        for index in fresh:
            self.net._mirror.mark_fresh(index)

    def _momentum(self, param: nn.Parameter, like: torch.Tensor) -> torch.Tensor:
        """SGD's momentum buffer of `param` (shaped like its storage), zeros before the
        first step: then m = mu * 0 + d = d, as SGD starts it."""
        state = self.optimizer.state[param]
        if state.get("momentum_buffer") is None:
            state["momentum_buffer"] = torch.zeros_like(like)
        return state["momentum_buffer"]

    def __call__(self, batch: RowBatch) -> StepResult:
        net = self.net
        input_strategy, strategy = self.planner.choose(batch)
        values = batch.values
        if self.input_dropout > 0:
            keep = 1 - self.input_dropout
            values = values * torch.empty_like(values).bernoulli_(keep).div_(keep)
        values = values.to(net.first.dtype)
        in_values = None if self.input_dropout == 0 else values
        if self.input_row_scale > 0:  # AutoEncoder.scale_inputs, on the (dropped-out) values
            in_values = row_scaled_values(batch.local, values, batch.size, self.input_row_scale)
        with torch.no_grad():
            h, saved = net.hidden_forward(
                batch, None, train=True, input_strategy=input_strategy, input_values=in_values
            )
            gh, y = net.sparse_output_loss(h, batch, strategy, keep_dense=self.refeed_steps > 0)
            sse, count = net.last_sse, net.last_count
            net.hidden_backward(gh, saved, batch, in_values)
            self._update()
            for index in range(self.refeed_steps):
                assert y is not None
                y = self._refeed(y, keep_out=index + 1 < self.refeed_steps)
        sse = float(sse)  # the one wait for a GPU, after every kernel of the step is queued
        return StepResult(sse=sse, count=count, loss=sse / max(count, 1))

    def _refeed(self, y: torch.Tensor, keep_out: bool) -> torch.Tensor | None:
        """One update on (y, f(y)) with a full mask; returns f(y) (the next re-feed input)
        if keep_out."""
        net = self.net
        h, saved = net.hidden_forward(None, y, train=True)
        gh, out = net.refeed_output_loss(h, y, keep_out)
        net.hidden_backward(gh, saved, None, None)
        self._update()
        return out


def keep_optimizer_state_in_param_layout(optimizer: torch.optim.Optimizer, first) -> None:
    """The first weight's optimizer state lives as (n, h1) (see FastNet.optimizer_layout);
    state_dict() returns it in the parameter's (h1, n) layout and load_state_dict() accepts
    that layout, so checkpoints are the same whichever compute mode wrote them."""
    if getattr(optimizer, "_deeprec_first_layout", None) is not None:
        return
    optimizer._deeprec_first_layout = first

    def index_of_first() -> int | None:
        index = 0
        for group in optimizer.param_groups:
            for p in group["params"]:
                if p is first:
                    return index
                index += 1
        return None

    def transpose_state(state_dict: dict) -> dict:
        index = index_of_first()
        entry = state_dict["state"].get(index)
        if entry is not None:
            state_dict["state"][index] = {
                k: (v.t().contiguous() if isinstance(v, torch.Tensor) and v.dim() == 2 else v)
                for k, v in entry.items()
            }
        return state_dict

    def post_save(opt, state_dict):
        return transpose_state(state_dict)

    def pre_load(opt, state_dict):
        state = dict(state_dict)
        state["state"] = dict(state_dict["state"])
        return transpose_state(state)

    optimizer.register_state_dict_post_hook(post_save)
    optimizer.register_load_state_dict_pre_hook(pre_load)


def check_supported(model: AutoEncoder) -> None:
    """Raise ConfigError if FastNet cannot run this model's activations."""
    probe = torch.zeros(1)
    for name in {model.activation_name, model.last_activation_name}:
        activation_backward(name, probe, probe, probe)


__all__ = [
    "FastNet",
    "FastStep",
    "activation_backward",
    "use_input_major_first_layer",
]
