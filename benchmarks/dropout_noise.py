"""Dropout noise on the CPU: F.dropout's own draw (bernoulli_ + scale) vs torch.rand's
float64 uniforms compared with keep (train/dropout_noise.py's portable path) vs
train/dropout_noise.py as it runs here (train/mt19937_noise.py's vectorised MT19937 where it
builds). All three give the same mask and leave the generator in the same state (checked).

    flock /tmp/deeprec-heavy.lock env PYTHONPATH=src /work/venv/bin/python \\
        benchmarks/dropout_noise.py --out docs/results/dropout_noise.json

Shapes: batch 128 x the code layer (1,024) and x 512, fp32 and bf16 masks; fastest of `reps`
calls, in ms.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _speed_common import emit_report, microbenchmark_args, min_seconds
from deeprec.train import mt19937_noise
from deeprec.train.dropout_noise import dropout_noise

SHAPES = ((128, 1024), (128, 512))
DTYPES = (torch.float32, torch.bfloat16)
DROP = 0.8


def bernoulli_noise(like: torch.Tensor, drop: float) -> torch.Tensor:
    """What F.dropout computes on the CPU before multiplying: bernoulli_(keep) / keep."""
    keep = 1.0 - drop
    return torch.empty_like(like).bernoulli_(keep).div_(keep)


def rand_noise(like: torch.Tensor, drop: float) -> torch.Tensor:
    """dropout_noise's portable path: torch.rand's float64 uniforms compared with keep."""
    keep = 1.0 - drop
    uniform = torch.rand(like.shape, dtype=torch.float64)
    return torch.lt(uniform, keep).to(like.dtype).div_(keep)


def same_draw(fn, like: torch.Tensor) -> bool:
    """Whether fn gives bernoulli_noise's mask and leaves the generator where it does."""
    torch.manual_seed(0)
    torch.rand(311)  # mid-block
    want = bernoulli_noise(like, DROP)
    want_state = torch.default_generator.get_state()
    torch.manual_seed(0)
    torch.rand(311)
    got = fn(like, DROP)
    return torch.equal(got, want) and torch.equal(torch.default_generator.get_state(), want_state)


def main() -> None:
    args = microbenchmark_args(__doc__, reps=50)
    report: dict = {
        "threads": args.threads,
        "torch": torch.__version__,
        "drop": DROP,
        "vectorised_mt19937": mt19937_noise.kernel() is not None,
    }
    for shape in SHAPES:
        for dtype in DTYPES:
            like = torch.empty(shape, dtype=dtype)
            key = f"{shape[0]}x{shape[1]}" + ("" if dtype == torch.float32 else "_bf16")

            def ms(fn, like=like) -> float:
                return round(min_seconds(lambda: fn(like, DROP), args.reps) * 1e3, 3)

            report[key] = {
                "same_mask": same_draw(dropout_noise, like),
                "rand_same_mask": same_draw(rand_noise, like),
                "bernoulli_ms": ms(bernoulli_noise),
                "rand_ms": ms(rand_noise),
                "dropout_noise_ms": ms(dropout_noise),
            }
    emit_report(report, args.out)


if __name__ == "__main__":
    main()
