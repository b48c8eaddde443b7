"""A GPU-bound training step: static shapes, no host synchronisation, one CUDA graph per bucket.

On a GPU the per-batch step of `FastStep` was bound by the CPU (Python, ~100 kernel launches,
the loss read back every batch): an H200 was busy 14-31% of each step
(docs/results/cuda_check.md). This step removes the CPU from the loop:

- The training rows' CSR matrix lives on the GPU (`device_batches.DeviceCSR`) when it fits
  (else pinned host buffers and asynchronous copies), and each batch is gathered there from
  its row indices (`device_batches.gather_padded`).
- Shapes are static: `batch_size` rows (a short last batch padded with an empty row) and the
  ratings padded to a bucket of a 1.25x size ladder; padding lands in a spare row of the dense
  batch that the loss never reads, so it changes no loss and no gradient.
- The step (`DenseStepCore.step`) is pure tensor code: forward, a hand-written backward and
  the momentum-SGD update in place (torch's fused SGD kernel where it runs with a
  device-tensor lr: float32/bf16 on CUDA, any float on the CPU), the sparse pass's SSE added
  to a device accumulator.
  Nothing is read back per batch: no `.item()`, no data-dependent shape, the learning rate
  a device tensor. It compiles with torch.compile(fullgraph=True) without graph breaks
  (tests/speed/test_graph_step.py), and on CUDA each bucket's step is captured once as a CUDA
  graph (`GraphStep`) and replayed: one graph launch and one 1 KB copy per batch.

The math is the reference step's (NVIDIA's dense procedure, `train.step.reference_step`):
dense input x with the observed mask, masked MSE over observed ratings, `refeed_steps` dense
re-feeding passes with F.mse_loss's mean over every real (not padded) row, momentum SGD
(torch.optim.SGD's update: coupled weight decay, dampening 0, no Nesterov) on the optimizer's
own momentum buffers, so checkpoints and a later per-batch step see the same state.
Differences, all documented: dropout masks of a short last batch are drawn for the padded
shape (other random numbers, the same distribution); on a GPU the graph's dropout draws come
from the same Philox generator as F.dropout but are not checked bit for bit against eager
draws; bf16 is the fast step's bf16 (GEMMs on bf16 copies of the fp32 weights, fp32 bias,
activations, loss and update; GEMM results, gradients included, rounded to bf16), not
autocast.

What it does not do (the trainer keeps the per-batch path then): optimizers other than SGD,
input_row_scale, rated_indicator, per-batch callbacks, mid-epoch checkpoints,
torchrun.
"""

from __future__ import annotations

import numpy as np
import torch

from deeprec.data.sparse import CSRMatrix
from deeprec.model.autoencoder import AutoEncoder
from deeprec.step.device_batches import (
    DeviceCSR,
    EpochPlan,
    bucket_sizes,
    gather_padded,
    host_padded,
    max_batch_nnz,
    plan_epoch,
)
from deeprec.step.fast import activation_backward

# where the device's free memory is at least this multiple of the CSR matrix, it is kept there
RESIDENT_MARGIN = 2.0
# eager steps of a bucket (on a side stream) before its graph is captured
WARMUP_STEPS = 1


def unsupported_reason(model: AutoEncoder, optimizer: torch.optim.Optimizer) -> str | None:
    """Why GraphStep cannot run this model/optimizer (None when it can)."""
    if type(optimizer) is not torch.optim.SGD:
        return f"optimizer {type(optimizer).__name__} (only SGD)"
    for group in optimizer.param_groups:
        if group.get("dampening", 0) != 0 or group.get("nesterov") or group.get("maximize"):
            return "SGD with dampening, nesterov or maximize"
    if model.input_row_scale != 0.0:
        return "input_row_scale"
    if model.indicator_weight is not None:
        return "rated_indicator"
    for name in {model.activation_name, model.last_activation_name}:
        try:
            activation_backward(name, torch.zeros(1), torch.zeros(1), torch.zeros(1))
        except Exception:
            return f"activation {name}"
    return None


def _fused_sgd_works(dtype: torch.dtype, device: torch.device) -> bool:
    """Whether torch._fused_sgd_ runs here with a device-tensor lr (probed eagerly once)."""
    if not hasattr(torch, "_fused_sgd_"):
        return False
    try:
        p, g, b = (torch.ones(4, dtype=dtype, device=device) for _ in range(3))
        lr = torch.full((1,), 0.5, dtype=dtype, device=device)
        torch._fused_sgd_(
            [p],
            [g],
            [b],
            weight_decay=0.0,
            momentum=0.5,
            lr=lr,
            dampening=0.0,
            nesterov=False,
            maximize=False,
            is_first_step=False,
        )
        return bool(torch.allclose(p, torch.full_like(p, 0.25)))  # b = 1.5, p = 1 - 0.75
    except (RuntimeError, TypeError, NotImplementedError):
        return False


class _Layer:
    def __init__(self, weight, transposed: bool, bias, act: str, act_name: str, drop: float):
        self.weight, self.transposed, self.bias = weight, transposed, bias
        self.act, self.act_name, self.drop = act, act_name, drop


class DenseStepCore:
    """The capture-safe step on padded triplets: forward, backward, SGD update, all in place.

    Holds references to the model's parameters and the optimizer's momentum buffers (created
    as zeros where the optimizer has none yet: its first step's clone of the gradient equals
    0.9 * 0 + g exactly)."""

    def __init__(
        self,
        model: AutoEncoder,
        optimizer: torch.optim.Optimizer,
        *,
        batch_size: int,
        precision: str = "fp32",
        refeed_steps: int = 0,
        input_dropout: float = 0.0,
    ) -> None:
        reason = unsupported_reason(model, optimizer)
        if reason is not None:
            raise ValueError(f"the graph step does not support {reason}")
        self.model = model
        self.optimizer = optimizer
        self.batch_size = int(batch_size)
        self.n_cols = model.n_inputs
        self.refeed_steps = int(refeed_steps)
        self.input_dropout = float(input_dropout)
        self.low = torch.bfloat16 if precision == "bf16" else None
        first = model.encoder_weights[0]
        self.dtype, self.device = first.dtype, first.device
        layers = [
            _Layer(
                spec.weight,
                spec.transposed,
                spec.bias,
                model.last_act if spec.last else model.act,
                spec.activation_name,
                spec.dropout,
            )
            for spec in model.layer_plan()
        ]
        self.layers = layers
        # optimizer layout: (param, group index, weight decay, momentum)
        self.params: list[tuple[torch.nn.Parameter, int, float, float]] = []
        for g, group in enumerate(optimizer.param_groups):
            for p in group["params"]:
                self.params.append((p, g, float(group["weight_decay"]), float(group["momentum"])))
        # shape (1,), not 0-d: torch 2.13's AOT autograd dropped in-place updates of a 0-d
        # float64 input under torch.compile (a plain 0-d float32 one was kept)
        self.neg_lr = [
            torch.zeros(1, dtype=self.dtype, device=self.device) for _ in optimizer.param_groups
        ]
        self.lr = [torch.zeros(1, dtype=self.dtype, device=self.device) for _ in self.neg_lr]
        self.sse = torch.zeros(1, dtype=torch.float64, device=self.device)
        self.buffers: list[torch.Tensor | None] = []
        self._buffer_objects: list[torch.Tensor | None] = []
        self.bind_optimizer_state()
        self.set_lr()
        self.fused = _fused_sgd_works(self.dtype, self.device)

    # ------------------------------------------------------------ state outside the step
    def bind_optimizer_state(self) -> bool:
        """Use the optimizer's momentum buffers (create them where missing). True when any
        buffer object changed (e.g. after optimizer.load_state_dict): graphs must be redone.

        Where FastStep keeps the first weight's state in its (n, h1) storage layout
        (step.fast.keep_optimizer_state_in_param_layout), the buffer stays in that layout and
        the step updates it through a transposed view, so checkpoints read the same."""
        first_layout = getattr(self.optimizer, "_deeprec_first_layout", None)
        objects, views = [], []
        for p, _, _, momentum in self.params:
            if momentum == 0.0:
                objects.append(None)
                views.append(None)
                continue
            state = self.optimizer.state[p]
            buf = state.get("momentum_buffer")
            if buf is None:
                if p is first_layout:
                    buf = torch.zeros_like(p.t(), memory_format=torch.contiguous_format)
                else:
                    buf = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["momentum_buffer"] = buf
            objects.append(buf)
            views.append(buf if buf.shape == p.shape else buf.t())
        changed = len(objects) != len(self._buffer_objects) or any(
            a is not b for a, b in zip(objects, self._buffer_objects, strict=False)
        )
        self._buffer_objects, self.buffers = objects, views
        return changed

    def set_lr(self) -> None:
        """Copy the optimizer's learning rates into the step's device tensors (no sync)."""
        for g, group in enumerate(self.optimizer.param_groups):
            self.neg_lr[g].fill_(-float(group["lr"]))
            self.lr[g].fill_(float(group["lr"]))

    # ------------------------------------------------------------ the step (capture-safe)
    def _noise(self, like: torch.Tensor, drop: float) -> torch.Tensor:
        """F.dropout's scaled keep mask (as kernels/dropout_noise.py draws it, minus the CPU's
        vectorised generator, which a compiler cannot trace)."""
        keep = 1.0 - drop
        if like.is_cuda:
            _, mask = torch.native_dropout(like, drop, True)
            return mask.to(like.dtype).mul_(1.0 / keep)
        uniform = torch.rand(like.shape, dtype=torch.float64, device=like.device)
        return torch.lt(uniform, keep).to(like.dtype).div_(keep)

    def _matrix(self, layer: _Layer) -> torch.Tensor:
        w = layer.weight.t() if layer.transposed else layer.weight  # (out, in)
        return w if self.low is None else w.to(self.low)

    def _linear(self, h: torch.Tensor, layer: _Layer, w: torch.Tensor) -> torch.Tensor:
        if self.low is None:
            return torch.addmm(layer.bias, h, w.t())
        return torch.mm(h.to(self.low), w.t()).to(self.dtype) + layer.bias

    def _forward(self, inputs: torch.Tensor):
        saved = []
        h = inputs
        for layer in self.layers:
            w = self._matrix(layer)  # bf16: cast once per pass, read again by the backward
            z = self._linear(h, layer, w)
            y = layer.act(z)
            noise = self._noise(y, layer.drop) if layer.drop > 0 else None
            saved.append((h, w, z, y, noise))
            h = y * noise if noise is not None else y
        return h, saved

    def _weight_grad(self, g: torch.Tensor, h: torch.Tensor, layer: _Layer) -> torch.Tensor:
        """The layer's weight gradient g^T h, in the parameter's shape and memory order (the
        fast step stores the first weight input-major): the update then reads and writes
        every tensor in one order."""
        p = layer.weight
        as_transpose = layer.transposed == p.is_contiguous()  # want (g^T h)^T contiguous
        a, b = (h, g) if as_transpose else (g, h)
        if self.low is None:
            m = a.t().mm(b)
        else:
            m = a.to(self.low).t().mm(b.to(self.low)).to(self.dtype)
        return m.t() if as_transpose != layer.transposed else m

    def _backward(self, g: torch.Tensor, saved) -> list[torch.Tensor]:
        """Gradients of every parameter (in self.params order) for output gradient g."""
        grads: dict[int, torch.Tensor] = {}

        def add(param, grad):
            key = id(param)
            grads[key] = grad if key not in grads else grads[key] + grad

        for index in range(len(self.layers) - 1, -1, -1):
            layer = self.layers[index]
            h, w, z, y, noise = saved[index]
            if noise is not None:
                g = g * noise
            g = activation_backward(layer.act_name, g, z, y)
            add(layer.bias, g.sum(0))
            add(layer.weight, self._weight_grad(g, h, layer))
            if index > 0:
                g = g.mm(w) if self.low is None else g.to(self.low).mm(w).to(self.dtype)
        return [grads[id(p)] for p, _, _, _ in self.params]

    def _update(self, grads: list[torch.Tensor]) -> None:
        """torch.optim.SGD's step: g += wd * p; buf = momentum * buf + g; p -= lr * buf.

        Eagerly and in CUDA graphs it is torch's fused SGD kernel (`torch._fused_sgd_`, what
        SGD(fused=True) runs: one multi-tensor pass per parameter group, the lr read from a
        device tensor); under torch.compile, which has no fake kernel for that variant, and
        where the kernel refused the probe, the same update in separate element-wise ops."""
        if self.fused and not torch.compiler.is_compiling():
            self._fused_update(grads)
            return
        for (p, group, decay, momentum), buf, grad in zip(
            self.params, self.buffers, grads, strict=True
        ):
            if decay != 0.0:
                grad = grad.add(p, alpha=decay)
            if buf is not None:
                buf.mul_(momentum).add_(grad)
                grad = buf
            p.addcmul_(grad, self.neg_lr[group])

    def _fused_update(self, grads: list[torch.Tensor]) -> None:
        for g, group in enumerate(self.optimizer.param_groups):
            params, grad_list, buffers = [], [], []
            for (p, index, _, _), buf, grad in zip(self.params, self.buffers, grads, strict=True):
                if index != g:
                    continue
                flip = not p.is_contiguous()  # input-major first weight: its contiguous view
                params.append(p.t() if flip else p)
                grad = grad.t() if flip else grad
                grad_list.append(grad if grad.is_contiguous() else grad.contiguous())
                if buf is not None:
                    buffers.append(buf.t() if flip else buf)
            if params:
                torch._fused_sgd_(
                    params,
                    grad_list,
                    buffers,
                    weight_decay=float(group["weight_decay"]),
                    momentum=float(group["momentum"]),
                    lr=self.lr[g],
                    dampening=0.0,
                    nesterov=False,
                    maximize=False,
                    is_first_step=False,
                )

    @torch.no_grad()
    def step(
        self,
        local: torch.Tensor,
        cols: torch.Tensor,
        values: torch.Tensor,
        real_rows: torch.Tensor,
    ) -> None:
        """One training step on padded triplets (padding: local == batch_size, value 0)."""
        rows, n = self.batch_size, self.n_cols
        flat = local * n + cols
        x = torch.zeros((rows + 1) * n, dtype=self.dtype, device=self.device)
        x.scatter_(0, flat, values.to(self.dtype))
        mask = torch.zeros((rows + 1) * n, dtype=self.dtype, device=self.device)
        mask.scatter_(0, flat, torch.ones(flat.shape, dtype=self.dtype, device=self.device))
        x, mask = x.view(rows + 1, n)[:rows], mask.view(rows + 1, n)[:rows]
        count = mask.sum().clamp_min(1.0)  # as masked_mse
        inputs = x
        if self.input_dropout > 0:
            inputs = x * self._noise(x, self.input_dropout)
        out, saved = self._forward(inputs)
        diff = (out - x) * mask
        self.sse.add_((diff * diff).sum())
        self._update(self._backward(diff * (2.0 / count), saved))
        if self.refeed_steps:
            real = (torch.arange(rows, device=self.device) < real_rows).to(self.dtype)
            real = real.unsqueeze(1)
            total = (real_rows * n).to(self.dtype).clamp_min(1.0)  # F.mse_loss's mean
            y = out
            for _ in range(self.refeed_steps):
                out_y, saved = self._forward(y)
                g = (out_y - y) * real * (2.0 / total)
                self._update(self._backward(g, saved))
                y = out_y


class GraphStep:
    """Epochs of DenseStepCore steps over a CSR matrix, one CUDA graph per bucket on a GPU.

    `run(plan, start, stop)` queues batches start..stop-1 of an `EpochPlan` and returns without
    waiting; `sse()` reads the accumulated SSE (one synchronisation). On the CPU, or with
    graphs=False, the same step runs eagerly."""

    def __init__(
        self,
        model: AutoEncoder,
        optimizer: torch.optim.Optimizer,
        matrix: CSRMatrix,
        *,
        batch_size: int,
        precision: str = "fp32",
        refeed_steps: int = 0,
        input_dropout: float = 0.0,
        graphs: bool = True,
        resident: bool | None = None,
        sizes: np.ndarray | None = None,
    ) -> None:
        self.core = DenseStepCore(
            model,
            optimizer,
            batch_size=batch_size,
            precision=precision,
            refeed_steps=refeed_steps,
            input_dropout=input_dropout,
        )
        self.matrix = matrix
        self.batch_size = int(batch_size)
        self.device = self.core.device
        self.cuda = self.device.type == "cuda"
        self.graphs_enabled = bool(graphs) and self.cuda
        self.lengths = matrix.row_lengths()
        if sizes is None:  # the bucket ladder (tests pass a finer one)
            sizes = bucket_sizes(max_batch_nnz(self.lengths, self.batch_size))
        self.sizes = np.asarray(sizes, dtype=np.int64)
        if resident is None:
            resident = True
            if self.cuda:
                free, _ = torch.cuda.mem_get_info(self.device)
                resident = free >= RESIDENT_MARGIN * DeviceCSR.nbytes(matrix)
        self.resident = bool(resident)
        self.csr = DeviceCSR.from_csr(matrix, self.device) if self.resident else None
        self.pad_row = int(matrix.shape[0])
        # the graphs' one per-batch input: the batch's rows, then how many are real
        self.info = torch.full((self.batch_size + 1,), self.pad_row, dtype=torch.int64)
        self.info = self.info.to(self.device)
        self.rows, self.real_rows = self.info[: self.batch_size], self.info[self.batch_size]
        self._plan_info: torch.Tensor | None = None
        self._plan: EpochPlan | None = None
        self._inputs: dict[int, tuple[torch.Tensor, ...]] = {}  # host mode: static triplets
        self._ring: list[dict] = []
        self._turn = 0
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self._warm: dict[int, int] = {}
        self._pool = None
        self._side = torch.cuda.Stream(self.device) if self.graphs_enabled else None
        self.count = 0  # observed ratings of the batches queued since begin_epoch
        self.batches_run = 0
        self.graph_replays = 0

    # ---------------------------------------------------------------- epochs
    def plan(self, order: np.ndarray) -> EpochPlan:
        return plan_epoch(self.lengths, order, self.batch_size, self.sizes)

    def begin_epoch(self, plan: EpochPlan, sse: float = 0.0) -> None:
        """Start accumulating an epoch (from `sse`); take the optimizer's current lr."""
        if self.core.bind_optimizer_state():
            self.graphs.clear()  # graphs hold the old buffers' addresses
        self.core.set_lr()
        # what optimizer.step() would record for LR schedulers ("step() was called")
        self.core.optimizer._opt_called = True
        self.core.sse.fill_(sse)
        self.count = 0
        self._plan = plan
        info = np.concatenate([plan.rows, plan.real_rows[:, None]], axis=1)
        self._plan_info = torch.from_numpy(info).to(self.device)

    def run(self, start: int, stop: int) -> None:
        """Queue batches start..stop-1 of the epoch plan (no host synchronisation)."""
        plan = self._plan
        for b in range(start, stop):
            size = int(plan.padded[b])
            self.info.copy_(self._plan_info[b], non_blocking=True)  # on the device: no sync
            if not self.resident:
                self._stage(plan.rows[b], size)
            self._launch(size)
        self.count += int(plan.nnz[start:stop].sum())
        self.batches_run += stop - start

    def capture_all(self, plan: EpochPlan) -> int:
        """Capture a graph for every bucket `plan` uses, by stepping on one of its batches
        until captured (real training steps, out of order: for benchmarks, which keep the
        capture out of their timings; training captures as buckets first occur). Returns the
        number of steps it ran. Call begin_epoch(plan) first."""
        steps = 0
        if not self.graphs_enabled:
            return steps
        for size in np.unique(plan.padded):
            b = int(np.flatnonzero(plan.padded == size)[0])
            while int(size) not in self.graphs:
                self.run(b, b + 1)
                steps += 1
        return steps

    def sse(self) -> float:
        """The SSE accumulated since begin_epoch (waits for the queued steps)."""
        return float(self.core.sse[0])

    # ---------------------------------------------------------------- one batch
    def _body(self, size: int) -> None:
        if self.resident:
            csr = self.csr
            local, cols, values, _ = gather_padded(
                csr.indptr, csr.indices, csr.values, self.rows, size
            )
        else:
            local, cols, values = self._inputs[size]
        self.core.step(local, cols, values, self.real_rows)

    def _launch(self, size: int) -> None:
        if not self.graphs_enabled:
            self._body(size)
            return
        graph = self.graphs.get(size)
        if graph is not None:
            graph.replay()
            self.graph_replays += 1
            return
        if self._warm.get(size, 0) < WARMUP_STEPS:  # a real step, eagerly, on a side stream
            self._side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(self._side):
                self._body(size)
            torch.cuda.current_stream(self.device).wait_stream(self._side)
            self._warm[size] = self._warm.get(size, 0) + 1
            return
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):  # recorded, not run
            self._body(size)
        self.graphs[size] = graph
        graph.replay()
        self.graph_replays += 1

    def _stage(self, rows: np.ndarray, size: int) -> None:
        """Host mode: build the padded triplets with NumPy into a pinned buffer and copy them
        asynchronously into the bucket's static device inputs."""
        if size not in self._inputs:
            self._inputs[size] = (
                torch.zeros(size, dtype=torch.int64, device=self.device),
                torch.zeros(size, dtype=torch.int64, device=self.device),
                torch.zeros(size, dtype=torch.float32, device=self.device),
            )
        if not self._ring:
            largest = int(self.sizes[-1])
            pin = self.cuda
            for _ in range(3):
                self._ring.append(
                    {
                        "local": torch.zeros(largest, dtype=torch.int64, pin_memory=pin),
                        "cols": torch.zeros(largest, dtype=torch.int64, pin_memory=pin),
                        "values": torch.zeros(largest, dtype=torch.float32, pin_memory=pin),
                        "event": None,
                    }
                )
        slot = self._ring[self._turn % len(self._ring)]
        self._turn += 1
        if slot["event"] is not None:
            slot["event"].synchronize()  # its copy (two batches ago) has been read
        local, cols, values = host_padded(self.matrix, rows, size, self.pad_row)
        slot["local"].numpy()[:size] = local
        slot["cols"].numpy()[:size] = cols
        slot["values"].numpy()[:size] = values
        for target, name in zip(self._inputs[size], ("local", "cols", "values"), strict=True):
            target.copy_(slot[name][:size], non_blocking=True)
        if self.cuda:
            slot["event"] = torch.cuda.Event()
            slot["event"].record()
