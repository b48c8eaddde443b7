#!/usr/bin/env bash
# The GPU checks in one run on a CUDA machine: tests/gpu (skipped in CI, which has no GPU) and
# Netflix-scale training epochs on the GPU, fast vs reference mode, fp32 and bf16.
#
#   OUT=/tmp/cuda-check bash benchmarks/cuda_check.sh
#
# Needs a python3 with a CUDA build of torch and deeprec's dependencies importable; it runs
# deeprec from src/ (no install). Results of the last run: docs/results/cuda_check.md.
set -u
out=${OUT:-/tmp/cuda-check}
mkdir -p "$out"
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
    echo "cpu cores: $(nproc)"
} >"$out/machine.txt" 2>&1

start=$(date +%s)
timeout "${TESTS_TIMEOUT:-240}" python3 -m pytest -q -p no:cacheprovider -rA tests/gpu \
    >"$out/gpu_tests.log" 2>&1
echo "pytest exit $? after $(($(date +%s) - start)) s" >>"$out/gpu_tests.log"

settings=fast-fp32-refeed0,fast-bf16-refeed0,fast-fp32-refeed1,fast-bf16-refeed1
settings=$settings,reference-fp32-refeed0,reference-bf16-refeed0
settings=$settings,reference-fp32-refeed1,reference-bf16-refeed1
start=$(date +%s)
timeout "${BENCH_TIMEOUT:-240}" python3 benchmarks/netflix_scale_epoch.py --device cuda \
    --users "${USERS:-80000}" --batches "${BATCHES:-300}" --warmup 5 --chunk 50 --threads 4 \
    --settings "$settings" --out "$out/netflix_scale_epoch_cuda.json" \
    >/dev/null 2>"$out/netflix_scale_epoch_cuda.log"
echo "benchmark exit $? after $(($(date +%s) - start)) s" >>"$out/netflix_scale_epoch_cuda.log"
