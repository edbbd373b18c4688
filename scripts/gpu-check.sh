#!/bin/sh
# The prepared check for a GPU machine (`make gpu-check`): its own python3, nothing installed,
# no network, no datasets. Runs the CUDA tests (skips are failures), a short CPU-vs-GPU training
# run on synthetic Fashion-MNIST-shaped data, and the benchmark; results go under $OUT.
# Budget: under 6 minutes in all (stage limits add up to 360 s, typical run far less).
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/results/gpu-check}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 MLP_REQUIRE_GPU=1
DATA=$(mktemp -d)
trap 'rm -rf "$DATA"' EXIT
status=0

stage() {  # stage NAME SECONDS COMMAND...: run with a time limit, log to $OUT/NAME.log
    name=$1 limit=$2; shift 2
    echo "== $name (limit ${limit}s): $*"
    start=$(date +%s)
    timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
    rc=$?
    tail -n 25 "$OUT/$name.log"
    echo "== $name: exit $rc after $(( $(date +%s) - start ))s"
    [ "$rc" = 0 ] || status=1
}

{
    date -u +"date: %Y-%m-%dT%H:%M:%SZ"
    echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | sed 's/^/gpu: /'
    $PY -c 'import sys, numpy, cupy; print("python", sys.version.split()[0], "numpy", numpy.__version__, "cupy", cupy.__version__)' 2>&1
} | tee "$OUT/machine.txt"

stage cuda-tests 120 $PY -m pytest -q -m cuda -p no:cacheprovider tests
$PY -m mlp.synthetic "$DATA" 60000 10000 >/dev/null
stage train-cuda 45 $PY -m mlp.train --device cuda --data-dir "$DATA" --no-download --epochs 3 --seed 0
stage train-cpu 45 $PY -m mlp.train --device cpu --data-dir "$DATA" --no-download --epochs 2 --seed 0
# At most 8 files come back from $OUT: 6 logs and summaries here, the bench's JSON and table.
stage bench 150 $PY -m bench --workloads std,big --devices cpu,cuda --peers torch --no-textbook \
    --epochs 3 --cpu-steps 40 --data synthetic --no-time-to-accuracy --no-cli-rss --no-plot \
    --out "$OUT"

echo "epoch times (seconds):" | tee "$OUT/summary.txt"
grep -h "^epoch" "$OUT/train-cuda.log" | sed 's/^/  cuda /' | tee -a "$OUT/summary.txt"
grep -h "^epoch" "$OUT/train-cpu.log" | sed 's/^/  cpu  /' | tee -a "$OUT/summary.txt"
echo "gpu-check: $([ "$status" = 0 ] && echo PASSED || echo FAILED); results in $OUT" | tee -a "$OUT/summary.txt"
exit $status
