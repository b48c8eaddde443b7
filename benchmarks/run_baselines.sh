#!/usr/bin/env bash
# Tune the baselines on u1's validation part, then compare on u1 and 5 random 90/10 splits
# (baselines only), then DeepRec vs the same baselines on the same folds (issue 5's table).
# Run under the shared lock:  flock /tmp/deeprec-heavy.lock benchmarks/run_baselines.sh DATA
set -euo pipefail
DATA=${1:-../shared/data/ml-100k}
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD/src
PY=${PYTHON:-/work/venv/bin/python}
"$PY" benchmarks/tune_baselines.py --data "$DATA" --out docs/results/baselines_tuning.md
"$PY" benchmarks/compare_baselines.py --data "$DATA" --out docs/results/baselines.md \
    --tuned docs/results/baselines_tuning.csv --no-deeprec
"$PY" benchmarks/compare_baselines.py --data "$DATA" --out docs/results/comparison.md \
    --tuned docs/results/baselines_tuning.csv --deeprec-max-epochs 200
