#!/bin/sh
# The prepared check for a GPU machine (`make gpu-check`): its own python3, nothing installed,
# no network. Runs the CUDA tests (skips are failures: among them the new losses, the
# scikit-learn estimators on device="cuda", early stopping and schedules with a recorded
# step; PyTorch CUDA tensors in and out with no copy, which alone may skip: where python3
# has no CUDA PyTorch), short CPU-vs-GPU training runs (one with --early-stopping) on Fashion-MNIST where
# the run carried it in data/fashion-mnist (`make gpu-check-data`), else on synthetic data of
# its shape, a data-parallel run under mpiexec (NCCL, a world of one: one GPU hosts one NCCL
# rank; the cuda tests check its all-reduce is recorded in the step), and the benchmark;
# results go under $OUT.
# Budget: under 6 minutes in all (stage limits add up to 375 s, typical run far less).
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

# MPI for the NCCL checks: the machine's own mpi4py where it starts, else the carried wheels
# (`make gpu-check-data` puts them in .whl).
if ! $PY -c 'from mpi4py import MPI' >/dev/null 2>&1 && ls .whl/mpi4py-*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/mpi-site .whl/mpi4py-*.whl .whl/mpich-*.whl &&
        export PYTHONPATH="$PYTHONPATH:/tmp/mpi-site" PATH="$PATH:/tmp/mpi-site/bin"
fi
MPIEXEC=$(command -v mpiexec || echo mpiexec)

REAL=${GPU_CHECK_DATA:-data/fashion-mnist}
if $PY -c 'import sys; from mlp.data import find_dataset; find_dataset("fashion-mnist", sys.argv[1])' \
    "$REAL" >/dev/null 2>&1; then
    IMAGES=$REAL KIND="Fashion-MNIST from $REAL"
else
    IMAGES=$DATA/images KIND="synthetic, Fashion-MNIST-shaped ($REAL has no Fashion-MNIST)"
fi

{
    date -u +"date: %Y-%m-%dT%H:%M:%SZ"
    # MLP_COMMIT: the tree's commit where this copy's git metadata is older than its files
    echo "commit: ${MLP_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | sed 's/^/gpu: /'
    $PY -c 'import sys, numpy, cupy; print("python", sys.version.split()[0], "numpy", numpy.__version__, "cupy", cupy.__version__)' 2>&1
    $PY -c 'from mpi4py import MPI; from cupy.cuda import nccl; print("mpi:", MPI.Get_library_version().split(chr(10))[0], "· nccl", nccl.get_version())' 2>&1 | tail -n 1
    echo "training data: $KIND"
} | tee "$OUT/machine.txt"

stage cuda-tests 110 $PY -m pytest -q -m cuda -p no:cacheprovider --durations=10 tests
[ "$IMAGES" = "$REAL" ] || $PY -m mlp.cli.synthetic "$DATA/images" 60000 10000 >/dev/null
# The same seeded run on each device: their test accuracies should agree within noise.
train="$PY -m mlp --data-dir $IMAGES --no-download --seed 0 --epochs 3"
stage train-cuda 15 $train --device cuda
stage train-cuda-bf16 15 $train --device cuda --precision bf16
# The same, each step run op by op instead of replayed from its recording (CUDA graph).
stage train-cuda-op-by-op 15 env MLP_NO_CUDA_GRAPH=1 $train --device cuda
stage train-cpu 15 $train --device cpu
# A recorded step under a schedule and early stopping, watching held-out training images.
stage train-cuda-early-stop 15 $train --device cuda --epochs 6 --lr-schedule cosine \
    --validation-split 0.1 --early-stopping 2
# Data-parallel under a launcher: NCCL in a world of one, the step still recorded.
stage train-cuda-nccl 15 "$MPIEXEC" -n 1 $train --device cuda --distributed
# At most 8 files come back from $OUT: the training logs become one.
for name in train-cuda train-cuda-bf16 train-cuda-op-by-op train-cpu train-cuda-early-stop \
    train-cuda-nccl; do
    echo "== $name" && cat "$OUT/$name.log" && rm -f "$OUT/$name.log"
done >"$OUT/train.log"
stage ops 15 $PY -m bench.ops --device cuda
stage bench 160 $PY -m bench --workloads std,std-b256,std-b1024,big --devices cuda \
    --peers torch,torch-fused,torch-compile-ro,torch-graph --no-textbook --epochs 3 \
    --data synthetic --no-time-to-accuracy --no-cli-rss --no-distributed --no-plot --out "$OUT"

{
    echo "training runs on $KIND (device, each epoch's metrics and seconds, final accuracy):"
    awk '/^== /{run=$2} /^(device|epoch|test accuracy)/{print "  " run ": " $0}' "$OUT/train.log"
    grep -h "^target" "$OUT/bench.log"
    echo "gpu-check: $([ "$status" = 0 ] && echo PASSED || echo FAILED); results in $OUT"
} | tee "$OUT/summary.txt"
exit $status
