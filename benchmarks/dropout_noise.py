"""Dropout noise on the CPU: F.dropout's own draw (bernoulli_ + scale) vs
train/dropout_noise.py (float64 uniforms compared with keep: the same mask, checked here).

    flock /tmp/deeprec-heavy.lock env PYTHONPATH=src /work/venv/bin/python \
        benchmarks/dropout_noise.py --out docs/results/dropout_noise.json

Shapes: batch 128 x the code layer (1,024) and x 512; fastest of `reps` calls, in ms.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _speed_common import emit_report, microbenchmark_args, min_seconds
from deeprec.train.dropout_noise import dropout_noise

SHAPES = ((128, 1024), (128, 512))
DROP = 0.8


def bernoulli_noise(like: torch.Tensor, drop: float) -> torch.Tensor:
    """What F.dropout computes on the CPU before multiplying: bernoulli_(keep) / keep."""
    keep = 1.0 - drop
    return torch.empty_like(like).bernoulli_(keep).div_(keep)


def main() -> None:
    args = microbenchmark_args(__doc__, reps=50)
    report: dict = {"threads": args.threads, "torch": torch.__version__, "drop": DROP}
    for shape in SHAPES:
        like = torch.empty(shape)
        torch.manual_seed(0)
        want = bernoulli_noise(like, DROP)
        torch.manual_seed(0)
        same = torch.equal(dropout_noise(like, DROP), want)
        report[f"{shape[0]}x{shape[1]}"] = {
            "same_mask": same,
            "bernoulli_ms": round(
                min_seconds(lambda like=like: bernoulli_noise(like, DROP), args.reps) * 1e3, 3
            ),
            "dropout_noise_ms": round(
                min_seconds(lambda like=like: dropout_noise(like, DROP), args.reps) * 1e3, 3
            ),
        }
    emit_report(report, args.out)


if __name__ == "__main__":
    main()
