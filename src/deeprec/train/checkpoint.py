"""Training checkpoints: everything needed to continue a run bit-for-bit, without pickle.

One self-contained file per checkpoint, ``RUN/checkpoints/ckpt-eEEEEE-bBBBBBBB.safetensors``
(the position is the next batch to run: epoch E, batch B; B = 0 is an epoch boundary):

- tensors: model weights (``model/...``), optimizer state (``optimizer/...``), scheduler
  tensors if any, the best-so-far weights (``best/...``, unless they equal the model), and
  RNG states (``rng/torch``, ``rng/cuda/N``, ``rng/numpy``);
- the safetensors header's metadata holds ``state``, a JSON document with the position,
  the epoch's running SSE, the history, best epoch, early-stopping counter, the config, a
  fingerprint of the training data, the non-tensor parts of the optimizer/scheduler/RNG
  states (tagged JSON, see `encode`), and ``sha256``, a digest of that JSON and every tensor.

Under torchrun (train/distributed.py) every rank takes part in each checkpoint: the ranks
agree on when (rank 0's clock decides time-based ones), each rank's RNG states and running
SSE are gathered to rank 0, and rank 0 alone writes them (``world_size``, ``peers``). A
resume with the same number of ranks gives each rank its own states back, so it continues
bit for bit; with another number it continues the same run, not bit for bit (each rank's
slice of a batch and its dropout draws change), and says so.

The training data is not copied: it comes from the prepared dataset named in
RUN/dataset.json, checked against the fingerprint on resume. Each file is written to a
temporary sibling, flushed, fsynced and renamed (deeprec.atomic), so a crash at any moment
leaves the previous checkpoint intact; only then are checkpoints beyond
``checkpoint_keep`` deleted. Loading sniffs the file first and refuses pickles.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import hashlib
import json
import os
import random
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deeprec.atomic import atomic_path
from deeprec.errors import CheckpointError
from deeprec.safe_files import require_safetensors
from deeprec.train.config import TrainConfig
from deeprec.train.trainer import EpochRecord, TrainResult

FORMAT = "deeprec-train-checkpoint"
FORMAT_VERSION = 1
CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"^ckpt-e(\d+)-b(\d+)\.safetensors$")


# ------------------------------------------------------------------ errors on write
def os_error_message(exc: OSError) -> str:
    code = exc.errno or 0
    return f"{os.strerror(code)} (errno {code}, {errno.errorcode.get(code, '?')})"


@contextlib.contextmanager
def writing(path: str | Path, what: str, *, kept: str | None = None) -> Iterator[None]:
    """Turn an OSError (disk full, read-only, permissions) into a CheckpointError that names
    the path, the errno, and what was kept."""
    try:
        yield
    except OSError as exc:
        tail = f"; {kept}" if kept else ""
        raise CheckpointError(f"cannot write {what} {path}: {os_error_message(exc)}{tail}") from exc


# ------------------------------------------------------------- tagged JSON <-> tensors
def encode(value: Any, key: str, tensors: dict[str, torch.Tensor]) -> Any:
    """JSON-able form of a state_dict-like value; tensors and arrays go into `tensors` under
    `key`-derived names. Tuples, Counters and non-string dict keys are tagged so that
    `decode` gives back exactly the same Python values."""
    if isinstance(value, torch.Tensor):
        tensors[key] = value.detach().cpu().contiguous()
        return {"__tensor__": key}
    if isinstance(value, np.ndarray):
        tensors[key] = torch.from_numpy(np.ascontiguousarray(value).copy())
        return {"__ndarray__": key}
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, tuple):
        return {"__tuple__": [encode(v, f"{key}/{i}", tensors) for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [encode(v, f"{key}/{i}", tensors) for i, v in enumerate(value)]
    if isinstance(value, Counter):
        return {"__counter__": [[encode(k, key, tensors), v] for k, v in value.items()]}
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in value):
            return {k: encode(v, f"{key}/{k}", tensors) for k, v in value.items()}
        return {
            "__dict__": [
                [encode(k, f"{key}/k{i}", tensors), encode(v, f"{key}/{k}", tensors)]
                for i, (k, v) in enumerate(value.items())
            ]
        }
    raise CheckpointError(f"cannot store a {type(value).__name__} at {key} in a checkpoint")


def decode(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, list):
        return [decode(v, tensors) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        (tag, inner), *_ = value.items()
        if tag == "__tensor__":
            return _tensor(tensors, inner)
        if tag == "__ndarray__":
            return _tensor(tensors, inner).numpy()
        if tag == "__tuple__":
            return tuple(decode(v, tensors) for v in inner)
        if tag == "__counter__":
            return Counter({decode(k, tensors): v for k, v in inner})
        if tag == "__dict__":
            return {decode(k, tensors): decode(v, tensors) for k, v in inner}
    return {k: decode(v, tensors) for k, v in value.items()}


def _tensor(tensors: dict[str, torch.Tensor], key: str) -> torch.Tensor:
    try:
        return tensors[key]
    except KeyError:
        raise CheckpointError(f"checkpoint lacks tensor {key!r}") from None


def tensors_digest(tensors: dict[str, torch.Tensor], state_json: str = "") -> str:
    """sha256 over the state JSON and every tensor's name, dtype, shape and bytes."""
    digest = hashlib.sha256(state_json.encode())
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        if t.numel():
            digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


# --------------------------------------------------------------------- RNG states
def live_rng_state() -> dict[str, Any]:
    """Every RNG training may draw from: torch CPU (dropout), CUDA, NumPy's and Python's
    global generators. Data order needs none: it is a function of (seed, epoch)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    state["numpy"] = np.random.get_state()
    state["python"] = random.getstate()
    return state


def rng_state(
    tensors: dict[str, torch.Tensor], live: dict[str, Any] | None = None, key: str = "rng"
) -> dict[str, Any]:
    """`live` (this process's RNG states when None) encoded under `key`."""
    live = live_rng_state() if live is None else live
    return {name: encode(value, f"{key}/{name}", tensors) for name, value in live.items()}


def set_rng_state(state: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(decode(state["torch"], tensors))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([decode(s, tensors) for s in state["cuda"]])
    np.random.set_state(decode(state["numpy"], tensors))
    version, internal, gauss = decode(state["python"], tensors)
    random.setstate((version, tuple(internal), gauss))


# ---------------------------------------------------------------------- the files
@dataclass
class Checkpoint:
    """A checkpoint read back from disk (state JSON + tensors, already verified)."""

    path: Path
    state: dict[str, Any]
    tensors: dict[str, torch.Tensor]

    @property
    def epoch(self) -> int:
        return int(self.state["position"]["epoch"])

    @property
    def batch(self) -> int:
        return int(self.state["position"]["batch"])


@dataclass
class ResumeState:
    """Where Trainer.fit continues: read by the trainer (see trainer.py)."""

    epoch: int
    batch: int
    sse: float
    count: int
    epochs_without_gain: int
    result: TrainResult
    best_state: dict[str, torch.Tensor] | None


def checkpoint_name(epoch: int, batch: int) -> str:
    return f"ckpt-e{epoch:06d}-b{batch:08d}.safetensors"


def checkpoint_position(path: str | Path) -> tuple[int, int] | None:
    """(epoch, batch) from a checkpoint file name; None for any other name."""
    match = _NAME.match(Path(path).name)
    return (int(match[1]), int(match[2])) if match else None


def list_checkpoints(folder: str | Path) -> list[Path]:
    """Complete checkpoint files (never temporaries), newest position first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        position = checkpoint_position(path)
        if position is not None:
            found.append((position, path))
    return [path for _, path in sorted(found, reverse=True)]


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Load and verify one checkpoint file; refuses pickles without parsing them."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    require_safetensors(path, what="training checkpoint")
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path} is not a readable safetensors file ({exc})") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a deeprec training checkpoint")
    if tensors_digest(tensors, meta.get("state", "")) != meta.get("sha256"):
        raise CheckpointError(f"{path}: checksum mismatch, the file is damaged")
    try:
        state = json.loads(meta["state"])
    except (KeyError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: checkpoint state is missing or not JSON ({exc})") from None
    if state.get("version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: unsupported checkpoint version {state.get('version')!r}")
    return Checkpoint(path=path, state=state, tensors=tensors)


def latest_checkpoint(
    folder: str | Path, *, warn: Callable[[str], None] | None = None
) -> Checkpoint:
    """The newest checkpoint that loads and verifies; damaged newer ones are skipped."""
    problems = []
    for path in list_checkpoints(folder):
        try:
            return read_checkpoint(path)
        except CheckpointError as exc:
            problems.append(str(exc))
            if warn is not None:
                warn(f"skipping damaged checkpoint: {exc}")
    detail = f" ({'; '.join(problems)})" if problems else ""
    raise CheckpointError(f"no usable checkpoint in {folder}{detail}")


def data_fingerprint(matrix: Any) -> dict[str, Any]:
    """Shape, nnz and a sha256 of the training matrix the run was started with."""
    digest = hashlib.sha256()
    for part in (matrix.indptr, matrix.indices, matrix.values):
        digest.update(np.ascontiguousarray(part).tobytes())
    return {"shape": list(matrix.shape), "nnz": int(matrix.nnz), "sha256": digest.hexdigest()}


# --------------------------------------------------------------------- the writer
class Checkpointer:
    """Writes checkpoints during Trainer.fit and restores one before it (``attach``).

    Frequency comes from the config: every ``checkpoint_every_epochs`` epochs (the last
    epoch and an early stop always get one), every ``checkpoint_every_batches`` batches
    inside an epoch, and whenever ``checkpoint_every_minutes`` have passed since the last.
    Under torchrun every rank needs one (ranks > 0 with ``writes=False``): each checkpoint
    gathers the ranks' RNG states, so all ranks must reach it together.
    """

    def __init__(
        self,
        folder: str | Path,
        *,
        resume_from: Checkpoint | None = None,
        echo: Callable[[str], None] | None = None,
        writes: bool = True,
    ) -> None:
        """`writes=False` restores `resume_from` but never writes (e.g. DDP ranks > 0)."""
        self.folder = Path(folder)
        self.writes = writes
        self.resume_from = resume_from
        self.echo = echo or (lambda _msg: None)
        self.written: list[Path] = []
        self._last_time = time.monotonic()
        self._result = TrainResult()
        self._epochs_without_gain = 0
        self._fingerprint: dict[str, Any] | None = None
        self._trainer: Any = None
        self._dist: Any = None  # the DistContext under torchrun (train/distributed.py)

    # -------------------------------------------------------------- hooks
    def attach(self, trainer: Any) -> None:
        """Hook into a freshly built Trainer; restore the checkpoint to resume from, if any."""
        trainer.checkpointer = self
        self._trainer = trainer
        self._dist = trainer.ddp.ctx if getattr(trainer, "ddp", None) is not None else None
        self._fingerprint = data_fingerprint(trainer.data.train)
        if self.writes:
            self._remove_temporaries()
        if self.resume_from is not None:
            trainer.resume_state = self._restore(trainer, self.resume_from)

    def begin(self, result: TrainResult, epochs_without_gain: int) -> None:
        """Called by Trainer.fit before the first batch; a fresh run gets a checkpoint of
        its initial state, so a kill at any later moment can be resumed."""
        self._result, self._epochs_without_gain = result, epochs_without_gain
        self._last_time = time.monotonic()
        if self.resume_from is None and not result.history:
            self._checkpoint(self._trainer, 1, 0, 0.0, 0, best_is_model=False)

    def batch_end(self, trainer: Any, epoch: int, done: int, sse: float, count: int) -> None:
        config: TrainConfig = trainer.config
        every = config.checkpoint_every_batches
        if self._dist is None and not self.writes:
            return
        if self._due(config, bool(every and done % every == 0)):
            self._checkpoint(trainer, epoch, done, sse, count, best_is_model=False)

    def epoch_end(
        self, trainer: Any, epoch: int, result: TrainResult, epochs_without_gain: int
    ) -> None:
        self._result, self._epochs_without_gain = result, epochs_without_gain
        config: TrainConfig = trainer.config
        every = config.checkpoint_every_epochs
        scheduled = bool(every and epoch % every == 0) or epoch == config.epochs
        if self._due(config, scheduled or result.stopped_early):
            self._checkpoint(
                trainer, epoch + 1, 0, 0.0, 0, best_is_model=result.best_epoch == epoch
            )

    def _due(self, config: TrainConfig, scheduled: bool) -> bool:
        """`scheduled` (the same on every rank) or the time-based interval has passed, by
        rank 0's clock on every rank: one tiny collective per call under torchrun, and only
        with ``checkpoint_every_minutes`` set."""
        if not config.checkpoint_every_minutes:
            return scheduled
        due = scheduled or self._time_due(config)
        return due if self._dist is None else self._dist.agree(due)

    def _time_due(self, config: TrainConfig) -> bool:
        minutes = config.checkpoint_every_minutes
        return bool(minutes) and time.monotonic() - self._last_time >= minutes * 60.0

    def _checkpoint(
        self, trainer: Any, epoch: int, batch: int, sse: float, count: int, *, best_is_model: bool
    ) -> None:
        """Under torchrun: gather every rank's RNG states and running SSE (every rank calls
        this), then rank 0 writes. Otherwise: write."""
        peers = None
        if self._dist is not None:
            mine = {"rng": live_rng_state(), "sse": sse, "count": count}
            peers = self._dist.gather_objects(mine)[1:]
        if self.writes:
            self.write(trainer, epoch, batch, sse, count, best_is_model=best_is_model, peers=peers)

    # -------------------------------------------------------------- write
    def write(
        self,
        trainer: Any,
        epoch: int,
        batch: int,
        sse: float,
        count: int,
        *,
        best_is_model: bool,
        peers: list[dict[str, Any]] | None = None,
    ) -> Path:
        """`peers`: ranks 1..W-1's {"rng", "sse", "count"} under torchrun."""
        from safetensors.torch import save_file

        tensors: dict[str, torch.Tensor] = {}
        result = self._result
        best: Any = None
        if best_is_model:
            best = "model"
        elif trainer.best_state is not None:
            best = encode(trainer.best_state, "best", tensors)
        state = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "position": {"epoch": epoch, "batch": batch, "sse": sse, "count": count},
            "progress": {
                "history": [r.to_dict() for r in result.history],
                "best_epoch": result.best_epoch,
                "best_valid_rmse": result.best_valid_rmse,
                "stopped_early": result.stopped_early,
                "epochs_without_gain": self._epochs_without_gain,
            },
            "config": trainer.config.to_dict(),
            "data": self._fingerprint,
            "model": encode(trainer.model.state_dict(), "model", tensors),
            "optimizer": encode(trainer.optimizer.state_dict(), "optimizer", tensors),
            "scheduler": None
            if trainer.scheduler is None
            else encode(trainer.scheduler.state_dict(), "scheduler", tensors),
            "best": best,
            "rng": rng_state(tensors),
            "world_size": 1 + len(peers or []),
            "peers": [
                {
                    "rng": rng_state(tensors, peer["rng"], f"peers/{rank}/rng"),
                    "sse": float(peer["sse"]),
                    "count": int(peer["count"]),
                }
                for rank, peer in enumerate(peers or [], start=1)
            ],
            "torch_version": torch.__version__,
            "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        state_json = json.dumps(state)
        metadata = {
            "format": FORMAT,
            "state": state_json,
            "sha256": tensors_digest(tensors, state_json),
        }
        target = self.folder / checkpoint_name(epoch, batch)
        previous = self.written[-1] if self.written else None
        kept = f"the previous checkpoint {previous} is intact" if previous else None
        with writing(target, "checkpoint", kept=kept):
            self.folder.mkdir(parents=True, exist_ok=True)
            with atomic_path(target) as tmp:
                save_file(tensors, str(tmp), metadata=metadata)
        self.written.append(target)
        self._last_time = time.monotonic()
        self._prune(trainer.config.checkpoint_keep)
        return target

    def _prune(self, keep: int) -> None:
        for old in list_checkpoints(self.folder)[keep:]:
            with contextlib.suppress(OSError):
                old.unlink()

    def _remove_temporaries(self) -> None:
        """Temporaries left by a killed writer (``.ckpt-*.tmp``): ours, the run is locked."""
        if not self.folder.is_dir():
            return
        for path in self.folder.iterdir():
            if path.name.startswith(".ckpt-") and path.name.endswith(".tmp"):
                with contextlib.suppress(OSError):
                    path.unlink()

    # ------------------------------------------------------------ restore
    def _restore(self, trainer: Any, ckpt: Checkpoint) -> ResumeState:
        state, tensors = ckpt.state, ckpt.tensors
        if state.get("data") != self._fingerprint:
            raise CheckpointError(
                f"{ckpt.path} was written for different training data "
                f"({state.get('data', {}).get('shape')} with "
                f"{state.get('data', {}).get('nnz')} ratings, now {self._fingerprint['shape']}"
                f" with {self._fingerprint['nnz']}): the prepared dataset changed"
            )
        try:
            trainer.model.load_state_dict(decode(state["model"], tensors))
            trainer.optimizer.load_state_dict(decode(state["optimizer"], tensors))
            if trainer.scheduler is not None and state.get("scheduler") is not None:
                trainer.scheduler.load_state_dict(decode(state["scheduler"], tensors))
            set_rng_state(state["rng"], tensors)
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            raise CheckpointError(f"{ckpt.path} does not fit this model/config: {exc}") from None
        best = state.get("best")
        if best == "model":
            best_state = copy.deepcopy(trainer.model.state_dict())
        elif best is None:
            best_state = None
        else:
            best_state = decode(best, tensors)
        progress = state["progress"]
        result = TrainResult(
            history=[EpochRecord(**r) for r in progress["history"]],
            best_epoch=progress["best_epoch"],
            best_valid_rmse=progress["best_valid_rmse"],
            stopped_early=bool(progress["stopped_early"]),
        )
        position = state["position"]
        epoch = int(position["epoch"])
        sse, count = self._restore_rank(ckpt, trainer)
        if result.stopped_early:
            epoch = trainer.config.epochs + 1
        self.written.append(ckpt.path)
        return ResumeState(
            epoch=epoch,
            batch=int(position["batch"]),
            sse=sse,
            count=count,
            epochs_without_gain=int(progress["epochs_without_gain"]),
            result=result,
            best_state=best_state,
        )

    def _restore_rank(self, ckpt: Checkpoint, trainer: Any) -> tuple[float, int]:
        """This rank's RNG states and the running (SSE, count) of the interrupted epoch
        (the fast step's strategies follow from the config and each batch's shape, so a
        resume makes the same choices without any saved state).

        Rank 0's RNG states are already restored. With the number of processes the
        checkpoint was written with, every rank gets its own back. With another number,
        ranks the checkpoint knows get theirs, newer ranks a seed derived from the position,
        and rank 0 carries the epoch's whole running SSE (the epoch's train RMSE sums over
        ranks, so it stays right)."""
        state, tensors = ckpt.state, ckpt.tensors
        position, peers = state["position"], state.get("peers", [])
        saved = int(state.get("world_size", 1))
        rank = 0 if self._dist is None else self._dist.rank
        world = 1 if self._dist is None else self._dist.world_size
        if rank == 0 and saved != world:
            self.echo(
                f"note: {ckpt.path.name} was written by {saved} process(es) and is resumed "
                f"by {world}: the run continues, but not bit for bit (each rank's slice of "
                "a batch and its dropout draws differ)"
            )
        # this rank's entry: rank 0's live in the state itself; None for a rank it lacks
        own = state if rank == 0 else peers[rank - 1] if rank <= len(peers) else None
        if own is None:
            seed = trainer.config.seed
            torch.manual_seed(hash((seed, rank, ckpt.epoch, ckpt.batch)) & 0xFFFF_FFFF)
            own = {}
        elif rank > 0:
            set_rng_state(own["rng"], tensors)
        if saved == world:
            mine = position if rank == 0 else own
            return float(mine["sse"]), int(mine["count"])
        if rank > 0:
            return 0.0, 0
        everyone = [position, *peers]
        return sum(float(p["sse"]) for p in everyone), sum(int(p["count"]) for p in everyone)
