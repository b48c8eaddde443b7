"""Train a DeepRec on a prepared dataset into a run directory (what `deeprec train` does)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deeprec.data.dataset import PreparedDataset
from deeprec.errors import CheckpointError, ConfigError
from deeprec.estimator import DeepRec
from deeprec.runs.directory import EventLog, RunDir
from deeprec.train.checkpoint import (
    CHECKPOINT_DIR,
    Checkpoint,
    Checkpointer,
    latest_checkpoint,
    list_checkpoints,
    read_checkpoint,
    writing,
)
from deeprec.train.config import TrainConfig, load_yaml, read_yaml
from deeprec.train.distributed import is_main_process
from deeprec.train.lock import RunLock
from deeprec.train.trainer import EpochRecord

# Options `--resume` may change: they do not alter what the remaining steps compute.
RESUME_OVERRIDABLE = (
    "epochs",
    "device",
    "early_stopping",
    "checkpoint_every_epochs",
    "checkpoint_every_batches",
    "checkpoint_every_minutes",
    "checkpoint_keep",
    "eval_batch_size",
)


def train_run(
    data_dir: str | Path,
    config: TrainConfig,
    out: str | Path,
    *,
    overwrite: bool = False,
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train, checkpoint (see train/checkpoint.py), keep the best model, score it on test.

    The run directory is locked (RUN/.lock) for the whole run: a second training into it
    fails with RunLockedError.
    """
    dataset = PreparedDataset.load(data_dir)
    run = RunDir(out)
    if not is_main_process():  # [ddp] other ranks train in step with rank 0, write nothing
        follower = Checkpointer(run.path / CHECKPOINT_DIR, writes=False)
        return _train(run, dataset, config, follower, progress=False, echo=_quiet, main=False)
    with RunLock(out):
        with writing(run.path, "run directory"):
            run.create(overwrite=overwrite)
            run.write_text("config.yaml", config.to_yaml())
            run.write_json(
                "dataset.json",
                {"path": str(Path(data_dir).resolve()), "meta": dataset.meta},
            )
        checkpointer = Checkpointer(run.path / CHECKPOINT_DIR, echo=echo)
        return _train(run, dataset, config, checkpointer, progress=progress, echo=echo)


def select_run(
    data_dir: str | Path,
    settings: dict[str, Any],
    out: str | Path,
    *,
    overwrite: bool = False,
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """`deeprec train` without --config: choose the model on validation among
    deeprec.selection's candidates (`settings` from --set pin keys in every candidate),
    keep the winner. The run directory gets what train_run writes (config.yaml is the
    chosen config, so `--config RUN/config.yaml` retrains it) plus selection.json. No
    checkpoints are kept while candidates train: an interrupted selection starts again."""
    dataset = PreparedDataset.load(data_dir)
    run = RunDir(out)
    model = DeepRec(**settings, verbose=False)
    model.get_params()  # unknown keys fail in the constructor already
    with RunLock(out):
        with writing(run.path, "run directory"):
            run.create(overwrite=overwrite)
            run.write_json(
                "dataset.json",
                {"path": str(Path(data_dir).resolve()), "meta": dataset.meta},
            )
        started = time.perf_counter()
        echo("choosing the model on validation (deeprec.selection; --config skips this)")
        model.fit(dataset, echo=echo)
        refit = getattr(model, "refit_", None)
        if refit:
            echo(
                f"{refit_sentence(refit, model.selection_['winner'])} "
                "(--set refit=false keeps the early-stopped winner)"
            )
        with writing(run.path / "config.yaml", "config"):
            run.write_text("config.yaml", model.config().to_yaml())
            run.write_json("selection.json", model.selection_)
        with writing(run.metrics_path, "metrics"):
            for record in model.history_:
                run.append_metrics(record.to_dict())
        with writing(run.path / "curves.png", "curves"):
            run.plot_curves()
        with writing(run.best, "best model", kept="the previous best model is intact"):
            model.save(run.best)
        summary = {"selected": model.selection_["winner"], **_fit_summary(model, started)}
        if len(dataset.test):
            summary["test"] = model.score(dataset, "test")
        with writing(run.path / "summary.json", "summary"):
            run.write_json("summary.json", summary)
        return summary


def _fit_summary(model: DeepRec, started: float) -> dict[str, Any]:
    """The part of summary.json every finished fit has (selected or pinned)."""
    return {
        "best_epoch": model.best_epoch_,
        # the best epoch of each phase (a second phase counts from its own start)
        "phase_best_epochs": getattr(model, "phase_best_epochs_", [model.best_epoch_]),
        "best_valid_rmse": model.best_valid_rmse_,
        "epochs_run": len(model.history_),
        "train_seconds": time.perf_counter() - started,
        "architecture": model.module.architecture(),
        "refit": getattr(model, "refit_", None),
        # distillation (config teacher): the teacher's models, their validation RMSE
        "teacher": getattr(model, "teacher_", None),
    }


def has_checkpoint(out: str | Path) -> bool:
    """Whether `out` holds a checkpoint file to resume from (`--auto-resume`)."""
    return bool(list_checkpoints(Path(out) / CHECKPOINT_DIR))


def never_checkpointed(out: str | Path) -> bool:
    """`out` holds only what `train_run` writes before its first checkpoint (config,
    dataset reference, lock, temporaries): a run killed that early, which `--auto-resume`
    starts again. Anything else (a finished run whose checkpoints were deleted, say) is
    never overwritten."""
    path = Path(out)
    if not path.is_dir() or has_checkpoint(path):
        return False
    setup = {"config.yaml", "dataset.json", CHECKPOINT_DIR}
    return all(p.name in setup or p.name.startswith(".") for p in path.iterdir())


def resume_run(
    out: str | Path,
    *,
    overrides: list[str] | None = None,
    requested: TrainConfig | None = None,
    data_dir: str | Path | None = None,
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Continue a run from its newest good checkpoint, exactly where it left off.

    The config and data come from the run directory (config in the checkpoint, data from
    RUN/dataset.json unless `data_dir` is given; its fingerprint must match). `overrides`
    may only change the options in RESUME_OVERRIDABLE (e.g. more epochs); so may
    `requested`, a whole config (`--auto-resume`), against the checkpoint's. Under torchrun
    rank 0 picks the checkpoint and holds the lock; every rank reads that checkpoint (the
    run directory must be readable by all ranks, e.g. on a shared filesystem).
    """
    from deeprec.safe_files import refuse_pickle

    run = RunDir(out)
    if not is_main_process():  # [ddp] the checkpoint rank 0 chose; nothing written
        ckpt = read_checkpoint(run.path / CHECKPOINT_DIR / _shared_choice(None))
        config, dataset = _resumed(run, ckpt, overrides, requested, data_dir)
        follower = Checkpointer(run.path / CHECKPOINT_DIR, resume_from=ckpt, writes=False)
        return _train(run, dataset, config, follower, progress=False, echo=_quiet, main=False)
    refuse_pickle(out, what="run directory to resume")
    if not run.path.is_dir():
        raise CheckpointError(f"cannot resume: {run.path} is not a run directory")
    if (run.path / "config.yaml").is_file() and "ensemble" in (
        read_yaml(run.path / "config.yaml") or {}
    ):
        raise ConfigError(
            f"{run.path} is an ensemble run; ensembles keep no checkpoints and cannot be "
            "resumed: train it again (with --overwrite)"
        )
    with RunLock(out):
        ckpt = latest_checkpoint(run.path / CHECKPOINT_DIR, warn=echo)
        _shared_choice(ckpt.path.name)  # [ddp] the other ranks resume from the same file
        config, dataset = _resumed(run, ckpt, overrides, requested, data_dir)
        done = ckpt.state["progress"]["history"]
        with writing(run.metrics_path, "metrics"):
            run.write_text("config.yaml", config.to_yaml())
            run.rewrite_metrics(done)  # drop epochs logged after this checkpoint
        echo(
            f"resuming {run.path} from {ckpt.path.name}: epoch {ckpt.epoch}, "
            f"batch {ckpt.batch} ({len(done)} epoch(s) done)"
        )
        checkpointer = Checkpointer(run.path / CHECKPOINT_DIR, resume_from=ckpt, echo=echo)
        return _train(run, dataset, config, checkpointer, progress=progress, echo=echo)


def _resumed(
    run: RunDir,
    ckpt: Checkpoint,
    overrides: list[str] | None,
    requested: TrainConfig | None,
    data_dir: str | Path | None,
) -> tuple[TrainConfig, PreparedDataset]:
    """The config and training data a resume from `ckpt` continues with (every rank)."""
    config = _resume_config(ckpt, overrides or [], requested)
    source = data_dir or run.read_json("dataset.json")["path"]
    return config, PreparedDataset.load(source)


def resume_device(out: str | Path, overrides: list[str]) -> str:
    """The device a resumed run trains on (its config.yaml with `overrides`): what a
    torchrun job needs to know before it joins the process group."""
    path = Path(out) / "config.yaml"
    config = TrainConfig.from_yaml(path) if path.is_file() else TrainConfig()
    return config.with_overrides([o for o in overrides if o.startswith("device=")]).device


def _shared_choice(name: str | None) -> str:
    """Rank 0's checkpoint file name, on every rank (itself outside torchrun)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        assert name is not None
        return name
    box = [name]
    dist.broadcast_object_list(box, src=0)
    return str(box[0])


def _quiet(_message: str) -> None:
    """echo for ranks > 0: rank 0 speaks for the job."""


def _resume_config(
    ckpt: Checkpoint, overrides: list[str], requested: TrainConfig | None = None
) -> TrainConfig:
    config = TrainConfig.from_dict(ckpt.state["config"], source=str(ckpt.path))
    changed = config.with_overrides(overrides) if requested is None else requested
    frozen = [
        key
        for key in TrainConfig.option_names()
        if key not in RESUME_OVERRIDABLE and getattr(changed, key) != getattr(config, key)
    ]
    if frozen:
        what = "--resume" if requested is None else "--auto-resume"
        raise ConfigError(
            f"{what} cannot change {', '.join(frozen)} (it would not continue the same run); "
            f"changeable: {', '.join(RESUME_OVERRIDABLE)}"
        )
    return changed


def _train(
    run: RunDir,
    dataset: PreparedDataset,
    config: TrainConfig,
    checkpointer: Checkpointer,
    *,
    progress: bool,
    echo: Callable[[str], None],
    main: bool = True,
) -> dict[str, Any]:
    model = DeepRec.from_config(config, verbose=progress)
    started = time.perf_counter()
    events = EventLog(run.path)

    def on_epoch_end(record: EpochRecord, improved: bool) -> None:
        if not main:  # [ddp]
            return
        with writing(run.metrics_path, "metrics"):
            run.append_metrics(record.to_dict())
        with writing(run.path, "TensorBoard events"):
            events.add(record.to_dict())
        if improved:
            with writing(run.best, "best model", kept="the previous best model is intact"):
                model.save(run.best)
        with writing(run.path / "curves.png", "curves"):
            run.plot_curves()
        valid = "n/a" if record.valid_rmse is None else f"{record.valid_rmse:.4f}"
        echo(
            f"epoch {record.epoch:3d}  train_rmse {record.train_rmse:.4f}  valid_rmse {valid}"
            f"  {record.epoch_seconds:.1f}s{'  *best' if improved else ''}"
        )

    try:
        model.fit(dataset, on_epoch_end=on_epoch_end, checkpointer=checkpointer)
    finally:
        events.close()
    summary = _fit_summary(model, started)
    if not main:  # [ddp] the other ranks hold the same weights; rank 0 saves and scores
        return summary
    with writing(run.best, "best model", kept="the previous best model is intact"):
        model.save(run.best)
    if len(dataset.test):
        summary["test"] = model.score(dataset, "test")
    # the history holds every epoch of the run, a resumed one's earlier epochs included
    summary["stopped_early"] = bool(config.early_stopping and len(model.history_) < config.epochs)
    summary.update(
        best_model=str(run.best), curves=str(run.path / "curves.png"),
        metrics=str(run.metrics_path),
    )  # fmt: skip
    with writing(run.path / "summary.json", "summary"):
        run.write_json("summary.json", summary)
    for line in outcome_lines(summary, config):
        echo(line)
    return summary


def refit_sentence(refit: dict[str, Any], model: str = "") -> str:
    """What a refit ran, from `refit_` (its epochs per phase and ratings)."""
    epochs = " + ".join(str(e) for e in refit["epochs"])
    who = f"{model} " if model else ""
    return (
        f"retrained {who}on train + validation ({refit['ratings']:,} ratings) for {epochs} "
        "epoch(s) (refit): that model is kept"
    )


def outcome_lines(summary: dict[str, Any], config: TrainConfig) -> list[str]:
    """What a user wants to know when training ends: why it stopped, which epoch is kept,
    the test RMSE, and where the model and the curves are."""
    epochs_run = summary.get("epochs_run", 0)
    best, valid = summary.get("best_epoch"), summary.get("best_valid_rmse")
    if summary.get("stopped_early"):
        stop = (
            f"stopped early after epoch {epochs_run} of {config.epochs}: validation RMSE did "
            f"not improve for {config.early_stopping} epoch(s) (early_stopping)"
        )
    else:
        stop = f"trained all {config.epochs} epochs"
    lines = [stop]
    refit = summary.get("refit")
    if valid is not None and refit:
        lines.append(
            f"best epoch {best} (validation RMSE {valid:.4f}); then {refit_sentence(refit)}"
        )
    elif valid is not None:
        lines.append(f"best epoch {best} (validation RMSE {valid:.4f}): that model is kept")
    else:
        lines.append(f"no validation split: the last epoch ({best}) is kept")
    test = summary.get("test")
    if test:
        lines.append(f"test RMSE {test['rmse']:.4f} (MAE {test['mae']:.4f}, n = {test['n']:,})")
    lines.append(f"model: {summary['best_model']}  (load_model, deeprec evaluate/predict --run)")
    lines.append(f"curves: {summary['curves']}  metrics: {summary['metrics']}")
    return lines


def train_ensemble_run(
    data_dir: str | Path,
    config_path: str | Path,
    out: str | Path,
    *,
    overrides: list[str] | None = None,
    overwrite: bool = False,
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """`deeprec train --config ENSEMBLE.yaml`: fit every member, blend on validation, keep
    the ensemble in RUN/best and score it on test. `overrides` (``--set``) apply to every
    member. No mid-run checkpoints: an interrupted ensemble run is started again."""
    import yaml

    from deeprec.ensemble import Ensemble, read_ensemble_yaml

    kwargs = read_ensemble_yaml(config_path)
    if overrides:  # validate before creating anything
        from deeprec.ensemble import expand_members

        expand_members(kwargs["members"], overrides)
    dataset = PreparedDataset.load(data_dir)
    run = RunDir(out)
    with RunLock(out):
        with writing(run.path, "run directory"):
            run.create(overwrite=overwrite)
            text = yaml.safe_dump({"ensemble": kwargs}, sort_keys=False)
            if overrides:
                text += "".join(f"# --set {o}\n" for o in overrides)
            run.write_text("config.yaml", text)
            run.write_json(
                "dataset.json",
                {"path": str(Path(data_dir).resolve()), "meta": dataset.meta},
            )
        model = Ensemble(**kwargs, verbose=progress)
        if overrides:
            model.members = [{**m, **_override_dict(overrides)} for m in model.members]
        started = time.perf_counter()

        def on_epoch_end(member: int, record: EpochRecord, improved: bool) -> None:
            with writing(run.metrics_path, "metrics"):
                run.append_metrics({"member": member, **record.to_dict()})
            valid = "n/a" if record.valid_rmse is None else f"{record.valid_rmse:.4f}"
            echo(
                f"member {member}  epoch {record.epoch:3d}  train_rmse {record.train_rmse:.4f}"
                f"  valid_rmse {valid}  {record.epoch_seconds:.1f}s{'  *best' if improved else ''}"
            )

        model.fit(dataset, on_epoch_end=on_epoch_end)
        with writing(run.best, "best model", kept="the previous best model is intact"):
            model.save(run.best)
        summary: dict[str, Any] = {
            "members": len(model.members_),
            "member_best_epochs": [m.best_epoch_ for m in model.members_],
            "member_valid_rmse": model.member_valid_rmse_,
            "blend": model.blend,
            "weights": [float(w) for w in model.weights_],
            "intercept": float(model.intercept_),
            "valid_rmse": model.valid_rmse_,
            "train_seconds": time.perf_counter() - started,
        }
        if len(dataset.test):
            summary["test"] = model.score(dataset, "test")
        with writing(run.path / "summary.json", "summary"):
            run.write_json("summary.json", summary)
        return summary


def _override_dict(overrides: list[str]) -> dict[str, Any]:
    """``key=value`` strings as a dict of YAML-parsed values (validated by expand_members)."""
    return {o.partition("=")[0].strip(): load_yaml(o.partition("=")[2]) for o in overrides}
