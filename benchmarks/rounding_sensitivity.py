"""How far float32 rounding alone moves validation RMSE (the noise floor for fast vs reference).

    flock /tmp/deeprec-heavy.lock env PYTHONPATH=src python \
        benchmarks/rounding_sensitivity.py --threads 1 --epochs 2

Same setup as train_speed.py with one re-feed step (lr 0.005): the reference run, the same
reference run with every initial weight multiplied by (1 + 1e-7 * N(0,1)) (about one float32
ulp), and the fast fp32 run. The RMSE gap reference-vs-perturbed-reference is what rounding
alone does in these training dynamics; fast-vs-reference is judged against it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_facts
from _speed_common import load_movielens_dat
from deeprec.train.config import TrainConfig
from deeprec.train.trainer import OrientedData, Trainer, build_model
from train_speed import DEFAULT_DATA


def run(config: TrainConfig, data: OrientedData, perturb: float) -> list[float]:
    torch.manual_seed(config.seed)
    model = build_model(config, data.train.shape[1])
    if perturb:
        gen = torch.Generator().manual_seed(123)
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(1 + perturb * torch.randn(p.shape, generator=gen))
    trainer = Trainer(model, config, data, rating_range=(1.0, 5.0))
    out = []
    for epoch in range(1, config.epochs + 1):
        torch.manual_seed(epoch)
        out.append(trainer._run_epoch(epoch, True).valid_rmse)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train, valid = load_movielens_dat(DEFAULT_DATA)
    data = OrientedData(train=train, valid=valid, test=valid)
    report = {
        "machine": machine_facts(),
        "threads": args.threads,
        "epochs": args.epochs,
        "valid_rmse_per_epoch": {},
    }
    for refeed, lr in ((1, 0.005), (0, 0.001)):
        base = dict(
            hidden=[512, 512, 1024],
            dropout=0.8,
            optimizer="sgd",
            lr=lr,
            momentum=0.9,
            batch_size=128,
            epochs=args.epochs,
            refeed_steps=refeed,
            seed=1,
        )
        rows = {
            "reference": run(TrainConfig(**base, compute="reference"), data, 0.0),
            "reference-perturbed-1e-7": run(TrainConfig(**base, compute="reference"), data, 1e-7),
            "fast-fp32": run(TrainConfig(**base, compute="fast"), data, 0.0),
        }
        report["valid_rmse_per_epoch"][f"refeed{refeed}"] = rows
        print(json.dumps(rows), file=sys.stderr, flush=True)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
