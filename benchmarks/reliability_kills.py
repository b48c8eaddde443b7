"""Kill a training many times at random moments, resume each time, compare with an
uninterrupted run; and time one checkpoint write of a Netflix-sized model.

    PYTHONPATH=src python benchmarks/reliability_kills.py --kills 20 --write-kills 5 \
        --out /tmp/deeprec-kills [--netflix-size]

Prints a Markdown summary (what was killed where, files checked, bits compared).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import machine  # noqa: E402
from deeprec.train.checkpoint import checkpoint_position, list_checkpoints  # noqa: E402
from fault_injection import command  # noqa: E402
from reliability.conftest import (  # noqa: E402
    assert_nothing_truncated,
    assert_same_tensors,
    best_weights,
    cli_env,
    curve,
    final_state,
    make_dataset,
    resume_args,
    train_args,
)

EXTRA = ("epochs=20", "checkpoint_every_batches=2")


def newest(run: Path):
    found = list_checkpoints(run / "checkpoints")
    return checkpoint_position(found[0]) if found else None


def kill_loop(data: Path, out: Path, kills: int, write_kills: int, seed: int) -> dict:
    rng = random.Random(seed)
    reference = out / "reference"
    done = subprocess.run(train_args(data, reference, *EXTRA), env=cli_env(), capture_output=True)
    assert done.returncode == 0, done.stderr
    run = out / "killed"
    args = train_args(data, run, *EXTRA)
    rows = []
    checked = 0
    # Kills in a random order: outside SIGKILLs after a random delay, and self-kills inside
    # a checkpoint write (between the complete temporary file and the rename).
    plan = ["outside"] * kills + ["in-write"] * write_kills
    rng.shuffle(plan)
    for kind in plan:
        before = newest(run) if run.exists() else None
        if kind == "in-write":
            crashing = command(args, crash_in_checkpoint=rng.randint(2, 6))
            proc = subprocess.run(crashing, env=cli_env(), capture_output=True)
            status = proc.returncode
        else:
            proc = subprocess.Popen(
                command(args, batch_delay=0.01),
                env=cli_env(),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            # wait until this process has written a checkpoint, then a random delay
            while newest(run) == before and proc.poll() is None:
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.5))
            proc.send_signal(signal.SIGKILL)
            status = proc.wait()
        tmp = [p.name for p in (run / "checkpoints").iterdir() if p.name.endswith(".tmp")]
        checked += assert_nothing_truncated(run)
        rows.append((kind, status, before, newest(run), len(tmp)))
        if status == 0:  # the run finished before the kill landed
            break
        args = resume_args(run)
    final = subprocess.run(resume_args(run), env=cli_env(), capture_output=True)
    assert final.returncode == 0, final.stderr
    assert_same_tensors(best_weights(run), best_weights(reference))
    assert_same_tensors(final_state(run), final_state(reference))
    assert curve(run) == curve(reference)
    return {"rows": rows, "files_checked": checked}


def time_big_checkpoint(out: Path) -> dict:
    """One checkpoint of the paper's Netflix-Full model (n=17768; 512,512,1024; Adam)."""
    import torch

    from deeprec.train.checkpoint import Checkpointer, read_checkpoint
    from deeprec.train.config import TrainConfig
    from deeprec.train.optim import build_optimizer
    from deeprec.train.trainer import build_model

    torch.manual_seed(0)
    config = TrainConfig(hidden=[512, 512, 1024], dropout=0.8)
    model = build_model(config, 17768)
    optimizer = build_optimizer(model.parameters(), config)
    for p in model.parameters():  # give Adam its moments
        p.grad = torch.randn_like(p)
    optimizer.step()

    class Fake:
        pass

    trainer = Fake()
    trainer.model, trainer.optimizer, trainer.scheduler, trainer.config = (
        model,
        optimizer,
        None,
        config,
    )
    trainer.best_state = {k: v.clone() for k, v in model.state_dict().items()}
    ckpt = Checkpointer(out / "big")
    ckpt._fingerprint = {"shape": [0, 17768], "nnz": 0, "sha256": ""}
    times = []
    for i in range(3):
        start = time.perf_counter()
        path = ckpt.write(trainer, 1, i + 1, 0.0, 0, best_is_model=False)
        times.append(time.perf_counter() - start)
    start = time.perf_counter()
    read_checkpoint(path)
    read_s = time.perf_counter() - start
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "bytes": path.stat().st_size,
        "write_s": times,
        "read_verify_s": read_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--write-kills", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("/tmp/deeprec-kills"))
    parser.add_argument("--netflix-size", action="store_true", help="also time a big checkpoint")
    parser.add_argument("--only-netflix-size", action="store_true", help="skip the kill loop")
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    print(f"Machine: {machine()}")
    if args.only_netflix_size:
        print(time_big_checkpoint(args.out))
        return
    data = make_dataset(args.out / "data")
    started = time.perf_counter()
    result = kill_loop(data, args.out, args.kills, args.write_kills, args.seed)
    print(f"kill loop: {time.perf_counter() - started:.0f} s")
    print("| # | kill | exit | newest checkpoint before | newest after | temporaries left |")
    print("|---|---|---|---|---|---|")
    for i, (kind, status, before, after, tmp) in enumerate(result["rows"], 1):
        print(f"| {i} | {kind} | {status} | {before} | {after} | {tmp} |")
    kills = sum(1 for r in result["rows"] if r[1] == -signal.SIGKILL)
    print(
        f"\n{kills} SIGKILLs; {result['files_checked']} file loads after kills, all good; "
        "final best weights, final model+optimizer state and metrics bit-identical to the "
        "uninterrupted run"
    )
    if args.netflix_size:
        print(time_big_checkpoint(args.out))


if __name__ == "__main__":
    main()
