#!/bin/bash
# Every experiment recipe on the ML-1M subset time split, as reported in
# docs/results/experiments.md. Run the whole script under the shared heavy lock:
#   flock /tmp/deeprec-heavy.lock benchmarks/run_experiments_ml1m.sh [OUT_DIR] [DATA_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD/src
PY=${PYTHON:-python}  # the interpreter with deeprec's dependencies
O=${1:-/tmp/exp-runs/ml1m}
D=${2:-/tmp/exp-ml1m-time}
if [ ! -f "$D/meta.json" ]; then
  $PY benchmarks/prepare_ml1m_time_split.py \
    --ratings ../../shared/data/ml-1m-users1-2999/ratings.dat.gz --out "$D"
fi
run() {
  name=$1; shift
  echo "=== $name start $(date -u +%T)"
  /usr/bin/time -f "$name wall %e s user %U s" \
    $PY -m deeprec experiment "$name" --data "$D" --out "$O/$name" --overwrite \
    --threads 1 --seed 42 "$@"
  echo "=== $name end $(date -u +%T)"
}
run activations --epochs 20 --set optimizer=adam
run depth --epochs 20 --set optimizer=adam
run width --epochs 20 --set optimizer=adam
run dropout --epochs 12 --set optimizer=adam
run refeed --epochs 10 --set batch_size=32
run comparison --epochs 30 --baseline-epochs 100
