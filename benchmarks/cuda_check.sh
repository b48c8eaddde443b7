#!/usr/bin/env bash
# The GPU checks in one run on a CUDA machine (issue 21): machine facts and an import check,
# the Netflix-scale epoch benchmark of the CUDA-graph step (graph-*) beside the per-batch step
# (fast-*), then tests/gpu (skipped in CI, which has no GPU). Ends within ~8 minutes: every
# stage has its own `timeout`, the benchmark's from what is left of TOTAL_SECONDS.
#
#   OUT=/tmp/cuda-check bash benchmarks/cuda_check.sh
#
# Worst case about 455 s plus kill grace (TOTAL_SECONDS). Needs a python3 (or $PYTHON) with a
# CUDA build of torch and deeprec's dependencies; wheels of missing ones can be carried in
# .whl/ (WHEELS), installed into /tmp/site first. It runs deeprec from src/ (no install). Writes at most 5 files into $OUT: machine.txt, summary.txt,
# netflix_scale_epoch_cuda.json (rewritten after each graph setting, so a timeout keeps what
# was measured), netflix_scale_epoch_cuda.log, gpu_tests.log. Results of the last run:
# docs/results/cuda_check.md.
set -u
out=${OUT:-/tmp/cuda-check}
py=${PYTHON:-python3}
total=${TOTAL_SECONDS:-455}
mkdir -p "$out"
began=$(date +%s)
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
# carried wheels (e.g. polars, absent from the GPU image): WHEELS folder, default .whl
wheels=${WHEELS:-.whl}
if [ -d "$wheels" ] && ls "$wheels"/*.whl >/dev/null 2>&1; then
    "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site "$wheels"/*.whl && export PYTHONPATH="/tmp/site:$PYTHONPATH"
fi
left() { echo $((total - ($(date +%s) - began))); }
summary="$out/summary.txt"
: >"$summary"

{
    echo "date: $(date -u +%FT%TZ)"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
    echo "cpu cores: $(nproc)"
    echo "python: $($py --version 2>&1) at $(command -v "$py")"
    echo "carried wheels: $(ls "$wheels" 2>/dev/null | tr '\n' ' ')"
    timeout 60 "$py" - <<'EOF'
import importlib

import torch

print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
if torch.cuda.is_available():
    print("device", torch.cuda.get_device_name(0))
missing = []
for name in ("numpy", "pandas", "pyarrow", "polars", "yaml", "typer", "tqdm", "safetensors",
             "pytest", "sympy", "triton"):
    try:
        module = importlib.import_module(name)
        print(f"import {name}: ok {getattr(module, '__version__', '')}")
    except Exception as exc:  # noqa: BLE001 - report every failure, keep checking
        missing.append(name)
        print(f"import {name}: MISSING ({type(exc).__name__}: {exc})")
try:
    import deeprec.step.graph  # noqa: F401

    print("import deeprec (from src/): ok")
except Exception as exc:  # noqa: BLE001
    missing.append("deeprec")
    print(f"import deeprec: FAILED ({type(exc).__name__}: {exc})")
print("MISSING:", ", ".join(missing) if missing else "nothing")
EOF
    echo "import check exit $?"
} >"$out/machine.txt" 2>&1
grep -E "^(MISSING|torch |import check)" "$out/machine.txt" >>"$summary"

# 1. the benchmark: 160,000 users = 1,250 batches per timed epoch (>= 1,000), extrapolated to
#    the full 3,752-batch epoch; the per-batch step over 300 batches for the speed-up
settings=graph-fp32-refeed0,graph-bf16-refeed0,graph-fp32-refeed1,graph-bf16-refeed1
settings=$settings,${OLD_SETTINGS:-fast-fp32-refeed0,fast-bf16-refeed0,fast-fp32-refeed1,fast-bf16-refeed1}
bench_limit=$(($(left) - ${TESTS_SECONDS:-220}))
[ "$bench_limit" -gt "${BENCH_TIMEOUT:-200}" ] && bench_limit=${BENCH_TIMEOUT:-200}
[ "$bench_limit" -lt 60 ] && bench_limit=60
start=$(date +%s)
timeout -k 10 "$bench_limit" "$py" benchmarks/netflix_scale_epoch.py --device cuda \
    --users "${USERS:-160000}" --graph-epochs "${GRAPH_EPOCHS:-1}" --profile-batches 100 \
    --batches "${BATCHES:-300}" --warmup 5 --chunk 50 --threads 4 \
    --settings "$settings" --out "$out/netflix_scale_epoch_cuda.json" \
    >/dev/null 2>"$out/netflix_scale_epoch_cuda.log"
code=$?
echo "benchmark exit $code after $(($(date +%s) - start)) s (limit $bench_limit s)" \
    | tee -a "$out/netflix_scale_epoch_cuda.log" >>"$summary"

# 2. tests/gpu with the time that is left
tests_limit=$(($(left) - 5))
[ "$tests_limit" -lt 30 ] && tests_limit=30
start=$(date +%s)
timeout -k 10 "$tests_limit" "$py" -m pytest -q -p no:cacheprovider -rfEs --durations=15 \
    tests/gpu >"$out/gpu_tests.log" 2>&1
code=$?
echo "pytest exit $code after $(($(date +%s) - start)) s (limit $tests_limit s)" \
    | tee -a "$out/gpu_tests.log" >>"$summary"
grep -E "[0-9]+ (passed|failed|errors?|skipped)" "$out/gpu_tests.log" | tail -n 1 >>"$summary"
echo "total $(($(date +%s) - began)) s" >>"$summary"
