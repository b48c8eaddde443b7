"""Data-parallel training on PyTorch's distributed engine: torchrun + DistributedDataParallel.

Launch with ``torchrun --nproc_per_node=N -m deeprec train ...``. torchrun sets RANK,
WORLD_SIZE, LOCAL_RANK and MASTER_ADDR/PORT; `distributed_session` turns them into a process
group (gloo on CPU, NCCL on CUDA) and always destroys it, on success and on error.

Semantics (why the numbers match a single process):

- ``batch_size`` is the GLOBAL batch. Every rank computes the same seeded epoch order
  (`epoch_order(rows, seed, epoch)`); global batch b is ``order[b*B:(b+1)*B]``, cut into
  ``world_size`` contiguous slices, and rank r trains on slice r. Every rank therefore runs the
  same number of steps, and the global batch is the concatenation of the rank slices.
- The sparse loss is the masked MSE, normalised by the observed ratings of the batch; the
  re-feeding loss is a mean over rows x items. Each rank computes its local mean; a DDP
  communication hook multiplies the rank's gradient by its share of the global normaliser
  (observed ratings for the sparse pass, rows for re-feeding) and SUMS over ranks. The result is
  the gradient of the global batch's loss, exactly as one process computes it (up to float
  summation order). Plain DDP averaging would weight a slice of few ratings like one of many.
  The global counts are computed locally: every rank holds the training matrix and knows the
  global batch, so no extra communication is needed.
- A rank whose slice of a (last, short) global batch is empty trains on a padding row with no
  ratings and weight 0, so that it still joins every collective.
- Dropout draws differ per rank (seed + rank), so with dropout > 0 a W-rank run is a different
  (equally valid) random trajectory than a 1-rank run; with dropout 0 they agree.
- Validation rows are sharded over ranks and (sum of squared errors, absolute errors, count)
  are all-reduced, so every rank sees the same RMSE and takes the same early-stopping decision.
"""

from __future__ import annotations

import os
import sys
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from deeprec.data.batching import RowBatch, row_batch
from deeprec.data.sparse import CSRMatrix
from deeprec.errors import ConfigError, TrainingError
from deeprec.model.autoencoder import AutoEncoder
from deeprec.train import evaluation

DEVICES = ("cpu", "cuda", "auto")
TIMEOUT_ENV = "DEEPREC_DIST_TIMEOUT"  # seconds a rank waits in a collective before failing
DEFAULT_TIMEOUT_S = 900.0


# --------------------------------------------------------------------------- devices
def resolve_device(name: str, local_rank: int | None = None) -> torch.device:
    """`cpu`, `cuda` or `auto` -> a torch.device; under torchrun, cuda means cuda:LOCAL_RANK.

    `auto` is CUDA when a GPU is visible, else CPU. `cuda` without a GPU, or more local ranks
    than GPUs, is a ConfigError (never a silent fall-back to CPU).
    """
    if name not in DEVICES:
        raise ConfigError(f"device must be one of {', '.join(DEVICES)}, got {name!r}")
    if name == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        if name == "auto":
            return torch.device("cpu")
        build = torch.version.cuda or "none (a CPU-only build)"
        raise ConfigError(
            f"device cuda was requested but no CUDA GPU is available (torch {torch.__version__}, "
            f"CUDA build: {build}); use --device cpu or auto"
        )
    if local_rank is None:
        local_rank = _env_int("LOCAL_RANK", 0)
    count = torch.cuda.device_count()
    if local_rank >= count:
        raise ConfigError(
            f"local rank {local_rank} has no GPU of its own ({count} visible); start at most "
            f"{count} processes per node (torchrun --nproc_per_node={count})"
        )
    return torch.device("cuda", local_rank)


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


# ----------------------------------------------------------------- process group
@dataclass(frozen=True)
class LaunchEnv:
    """What torchrun (or any env:// launcher) tells a process about its place in the job."""

    rank: int
    world_size: int
    local_rank: int

    @classmethod
    def from_env(cls) -> LaunchEnv | None:
        if "WORLD_SIZE" not in os.environ:
            return None
        env = cls(_env_int("RANK", 0), _env_int("WORLD_SIZE", 1), _env_int("LOCAL_RANK", 0))
        if env.world_size < 1 or not 0 <= env.rank < env.world_size:
            raise ConfigError(f"RANK={env.rank} WORLD_SIZE={env.world_size}: not a valid rank")
        return env


@dataclass(frozen=True)
class DistContext:
    """This process's rank in an initialised process group, and its compute device."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def all_reduce(
        self, values: Sequence[float], op: dist.ReduceOp.RedOpType = dist.ReduceOp.SUM
    ) -> list[float]:
        """Element-wise reduction over ranks, in float64 (every rank gets the same numbers)."""
        on = self.device if dist.get_backend() == "nccl" else torch.device("cpu")
        tensor = torch.tensor(list(values), dtype=torch.float64, device=on)
        dist.all_reduce(tensor, op=op)
        return tensor.cpu().tolist()

    def all_reduce_sum(self, values: Sequence[float]) -> list[float]:
        return self.all_reduce(values, dist.ReduceOp.SUM)

    def agree(self, flag: bool) -> bool:
        """Rank 0's `flag`, on every rank (for what only rank 0 decides, e.g. by its clock)."""
        return bool(self.all_reduce([float(flag) if self.is_main else 0.0])[0])

    def gather_objects(self, value: Any) -> list[Any]:
        """Every rank's `value` (picklable), in rank order, on every rank."""
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, value)
        return gathered


def current_context(device: torch.device) -> DistContext | None:
    """The running process group as a DistContext; None when training in one process."""
    if not dist.is_available() or not dist.is_initialized():
        return None
    if dist.get_world_size() == 1:
        return None
    if dist.get_backend() == "nccl" and device.type != "cuda":
        raise ConfigError("the process group uses NCCL, which needs device cuda (got cpu)")
    return DistContext(rank=dist.get_rank(), world_size=dist.get_world_size(), device=device)


def is_main_process() -> bool:
    """True outside a process group and on rank 0: the one process that writes files."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def timeout_seconds() -> float:
    raw = os.environ.get(TIMEOUT_ENV)
    if raw is None:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{TIMEOUT_ENV} must be a number of seconds, got {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"{TIMEOUT_ENV} must be > 0, got {raw!r}")
    return value


@contextmanager
def distributed_session(device: str = "cpu") -> Iterator[DistContext | None]:
    """Join the torchrun job described by the environment, if any; always leave it.

    Yields None in a plain single process (no WORLD_SIZE, or WORLD_SIZE=1). Errors from the
    communication layer (a peer died, a timeout) become TrainingError naming this rank.
    """
    env = LaunchEnv.from_env()
    resolved = resolve_device(device, None if env is None else env.local_rank)
    if env is None or env.world_size == 1 or dist.is_initialized():
        yield current_context(resolved) if dist.is_initialized() else None
        return
    backend = "nccl" if resolved.type == "cuda" else "gloo"
    if resolved.type == "cuda":
        torch.cuda.set_device(resolved)
    where = f"rank {env.rank}/{env.world_size}"
    timeout = timedelta(seconds=timeout_seconds())
    try:
        dist.init_process_group(
            backend=backend,
            **_rendezvous(env, timeout),
            rank=env.rank,
            world_size=env.world_size,
            timeout=timeout,
            # NCCL: bind the communicator to this rank's GPU now, so errors surface at start
            **({"device_id": resolved} if resolved.type == "cuda" else {}),
        )
    except (RuntimeError, ValueError) as exc:
        master = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
        raise TrainingError(f"{where}: cannot join the process group at {master} ({exc})") from exc
    try:
        yield DistContext(rank=env.rank, world_size=env.world_size, device=resolved)
    except BaseException as exc:
        if is_communication_error(exc):
            first_line = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise TrainingError(
                f"{where}: lost contact with the other ranks (one probably failed: see its "
                f"error above; or a collective waited longer than "
                f"{TIMEOUT_ENV}={timeout_seconds():g}s): {first_line}"
            ) from exc
        print(f"deeprec {where} failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        raise
    finally:
        with suppress(Exception):  # never mask the real error with a teardown error
            dist.destroy_process_group()


def _rendezvous(env: LaunchEnv, timeout: timedelta) -> dict[str, Any]:
    """How the ranks find each other: env:// (MASTER_ADDR/PORT), except in a restarted
    torchrun attempt (--max-restarts), where the agent's store still holds the failed
    attempt's keys: a restarted rank could read a dead peer's gloo address from them and
    fail to connect (seen with torch 2.13). There the keys go under a per-attempt prefix."""
    attempt = _env_int("TORCHELASTIC_RESTART_COUNT", 0)
    if attempt == 0 or os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return {"init_method": "env://"}
    agent_store = dist.TCPStore(
        os.environ["MASTER_ADDR"],
        _env_int("MASTER_PORT", 0),
        env.world_size,
        is_master=False,
        timeout=timeout,
    )
    return {"store": dist.PrefixStore(f"deeprec/attempt_{attempt}", agent_store)}


_COMM_MARKERS = (
    "gloo",
    "nccl",
    "connection closed",
    "connection reset",
    "processgroup",
    "timed out",
)


def is_communication_error(exc: BaseException) -> bool:
    """A failure of the communication layer (a peer died, a collective timed out) rather than
    of this rank's own work. gloo reports a dead peer as a plain RuntimeError."""
    if isinstance(exc, dist.DistError):
        return True
    return isinstance(exc, RuntimeError) and any(m in str(exc).lower() for m in _COMM_MARKERS)


# ------------------------------------------------------------------- sharding
def shard_bounds(n: int, world_size: int, rank: int) -> tuple[int, int]:
    """[lo, hi) of `rank`'s contiguous slice of n items; sizes differ by at most one and the
    lower ranks take the extra items, so the slices concatenate to the whole."""
    base, extra = divmod(n, world_size)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


@dataclass(frozen=True)
class StepWeights:
    """This rank's share of the global batch's loss normalisers."""

    sparse: float  # local observed ratings / global observed ratings
    refeed: float  # local rows / global rows
    padding: bool = False


def shard_batches(
    matrix: CSRMatrix,
    order: np.ndarray,
    batch_size: int,
    rank: int,
    world_size: int,
    start: int = 0,
) -> Iterator[tuple[RowBatch, StepWeights]]:
    """This rank's slice of every global batch of `order` from global batch `start` on
    (a resumed epoch), with its loss weights."""
    lengths = matrix.row_lengths()
    for begin in range(start * batch_size, order.shape[0], batch_size):
        rows = order[begin : begin + batch_size]
        lo, hi = shard_bounds(rows.shape[0], world_size, rank)
        total = max(int(lengths[rows].sum()), 1)
        if hi > lo:
            local = rows[lo:hi]
            weights = StepWeights(
                sparse=int(lengths[local].sum()) / total, refeed=(hi - lo) / rows.shape[0]
            )
            yield row_batch(matrix, local), weights
        else:
            yield padding_batch(matrix, rows[:1]), StepWeights(0.0, 0.0, padding=True)


def padding_batch(matrix: CSRMatrix, rows: np.ndarray) -> RowBatch:
    """A one-row batch with no ratings: loss 0, sse 0, count 0 (its gradient is weighted 0)."""
    empty = torch.zeros(0, dtype=torch.int64)
    return RowBatch(
        rows=np.asarray(rows[:1]),
        local=empty,
        cols=empty.clone(),
        values=torch.zeros(0, dtype=torch.float32),
        n_cols=matrix.shape[1],
    )


def keep_rows(matrix: CSRMatrix, rows: np.ndarray) -> CSRMatrix:
    """A same-shape copy of `matrix` in which only `rows` keep their entries."""
    rows = np.asarray(rows, dtype=np.int64)
    local, cols, values = matrix.select_rows(rows)
    return CSRMatrix.from_coo(rows[local], cols, values, matrix.shape)


# ------------------------------------------------------------- gradient weighting
class _PassWeights:
    """Which weight the comm hook applies: pass 0 of a step is the sparse pass, every later
    backward of the same step is a re-feeding pass. The last bucket of a backward advances."""

    def __init__(self) -> None:
        self.weights = StepWeights(1.0, 1.0)
        self.pass_index = 0

    def start(self, weights: StepWeights) -> None:
        self.weights = weights
        self.pass_index = 0

    def current(self) -> float:
        return self.weights.sparse if self.pass_index == 0 else self.weights.refeed


def _weighted_sum_hook(state: _PassWeights, bucket):
    """DDP comm hook: grad = sum over ranks of (rank weight x local gradient).

    No annotations on purpose: DDP checks them against dist.GradBucket / Future[Tensor] and
    this module's postponed (string) annotations would fail that check."""
    buffer = bucket.buffer()
    buffer.mul_(state.current())
    if bucket.is_last():
        state.pass_index += 1
    future = dist.all_reduce(buffer, async_op=True).get_future()
    return future.then(lambda fut: fut.value()[0])


class DataParallel:
    """The trainer's data-parallel side: the DDP-wrapped model it steps, this rank's slice of
    each global batch, and training/validation metrics summed over ranks.

    Step functions that use autograd get `module` (DDP; the comm hook weights and sums the
    gradients). Step functions that compute gradients by hand step the bare model and call
    `before_update(params)` before each optimizer step instead.
    """

    def __init__(self, model: AutoEncoder, ctx: DistContext, *, seed: int) -> None:
        self.ctx = ctx
        self._weights = _PassWeights()
        device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        # DDP broadcasts rank 0's initial weights, so every replica starts identical.
        self.module = DistributedDataParallel(model, device_ids=device_ids)
        self.module.register_comm_hook(self._weights, _weighted_sum_hook)
        torch.manual_seed(seed + ctx.rank)  # independent dropout draws on each rank
        self._pending: deque[tuple[RowBatch, StepWeights]] = deque()
        self._eval_shards: dict[int, tuple[CSRMatrix, CSRMatrix]] = {}
        self.steps = 0

    def batches(
        self, matrix: CSRMatrix, order: np.ndarray, batch_size: int, start: int = 0
    ) -> Iterator[RowBatch]:
        """This rank's batches of the epoch, one per global batch from `start` on, in order."""
        for batch, weights in shard_batches(
            matrix, order, batch_size, self.ctx.rank, self.ctx.world_size, start
        ):
            self._pending.append((batch, weights))
            yield batch

    def begin_step(self, batch: RowBatch) -> None:
        """Call right before stepping on `batch` (from `batches`): arms its loss weights."""
        if not self._pending or self._pending[0][0] is not batch:
            raise TrainingError("data-parallel step on a batch not produced by batches()")
        _, weights = self._pending.popleft()
        self._weights.start(weights)
        self.steps += 1

    def before_update(self, params: Iterable[torch.nn.Parameter]) -> None:
        """The same weighted gradient sum, for step functions that compute gradients by hand
        (no autograd backward, so DDP's hooks never fire). Call once per optimisation pass
        (sparse pass, then each re-feed), after the gradients are set and right before
        `optimizer.step()`: one flat all-reduce per dtype, results copied back in place."""
        weight = self._weights.current()
        self._weights.pass_index += 1
        grads: dict[torch.dtype, list[torch.Tensor]] = {}
        for p in params:
            if p.grad is None:  # every rank must send the same layout: a missing grad is 0
                p.grad = torch.zeros_like(p)
            grads.setdefault(p.grad.dtype, []).append(p.grad)
        for group in grads.values():
            flat = torch.cat([g.reshape(-1) for g in group]).mul_(weight)
            dist.all_reduce(flat)
            offset = 0
            for g in group:
                g.copy_(flat[offset : offset + g.numel()].view(g.shape))
                offset += g.numel()

    def end_epoch(self, sse: float, count: int) -> tuple[float, int]:
        """Training (sse, count) summed over ranks, after checking the replicas still agree."""
        self.check_replicas()
        total_sse, total_count = self.ctx.all_reduce_sum([sse, count])
        return total_sse, round(total_count)

    def check_replicas(self, rtol: float = 1e-6) -> None:
        """Fail loudly if the ranks' weights differ, e.g. because a compute path stepped the
        bare module instead of the DDP wrapper, so its gradients were never exchanged."""
        with torch.no_grad():
            params = [p.detach().double() for p in self.module.module.parameters()]
            sums = [float(sum(p.sum() for p in params)), float(sum((p * p).sum() for p in params))]
        high = self.ctx.all_reduce([*sums, *(-v for v in sums)], dist.ReduceOp.MAX)
        spread = max(high[i] + high[i + len(sums)] for i in range(len(sums)))
        scale = max(abs(v) for v in sums) + 1e-12
        if spread > rtol * scale:
            raise TrainingError(
                f"rank {self.ctx.rank}: the data-parallel replicas' weights differ "
                f"(checksum spread {spread:.3g}); every optimisation pass must run the forward "
                "through the DDP-wrapped model the trainer passes to the step function"
            )

    def evaluate_sse(
        self,
        model: AutoEncoder,
        train_rows: CSRMatrix,
        eval_rows: CSRMatrix,
        **kwargs,
    ) -> tuple[float, float, int]:
        """`evaluation.evaluate_sse` on this rank's share of rows, summed over ranks."""
        key = id(eval_rows)
        cached = self._eval_shards.get(key)
        if cached is None or cached[0] is not eval_rows:
            rows = np.flatnonzero(eval_rows.row_lengths() > 0)
            mine = rows[self.ctx.rank :: self.ctx.world_size]
            cached = (eval_rows, keep_rows(eval_rows, mine))
            self._eval_shards[key] = cached
        sse, sae, count = evaluation.evaluate_sse(model, train_rows, cached[1], **kwargs)
        total_sse, total_sae, total_count = self.ctx.all_reduce_sum([sse, sae, count])
        return total_sse, total_sae, round(total_count)


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"environment variable {name} must be an integer, got {raw!r}") from None
