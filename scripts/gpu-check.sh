#!/bin/sh
# The prepared check for a GPU machine (`make gpu-check`): its own python3, nothing installed,
# no network. Runs the CUDA tests (skips are failures: among them the new losses, the
# scikit-learn estimators on device="cuda", early stopping and schedules with a recorded
# step; PyTorch CUDA tensors in and out with no copy, which alone may skip: where python3
# has no CUDA PyTorch), short CPU-vs-GPU training runs (one with --early-stopping) on Fashion-MNIST where
# the run carried it in data/fashion-mnist (`make gpu-check-data`), else on synthetic data of
# its shape, a data-parallel run under mpiexec (NCCL, a world of one: one GPU hosts one NCCL
# rank; the cuda tests check its all-reduce is recorded in the step), each op's time (and a
# layer's forward and gradients replayed from a CUDA graph, as separate kernels and as one
# cuBLASLt product with the bias work in its epilogue: the cuda tests check they agree), and
# the benchmark:
# float32 and bf16 tables, a TF32 table, and time to 0.89 against PyTorch's strongest rows;
# results go under $OUT.
# Budget: 6 minutes in all (GPU_CHECK_SECONDS, 360 s): each stage has its own limit, and the
# main bench stage gets what the stages before it left, less the limit of the one after it.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/results/gpu-check}
PY=${PYTHON:-python3}
# the stages end 15 s early: room for a stage's 5 s to die after its SIGTERM, and the summary
DEADLINE=$(( $(date +%s) + ${GPU_CHECK_SECONDS:-360} - 15 ))
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 MLP_REQUIRE_GPU=1
DATA=$(mktemp -d)
trap 'rm -rf "$DATA"' EXIT
status=0
timings=""

stage() {  # stage NAME SECONDS COMMAND...: run with a time limit, log to $OUT/NAME.log;
    # a benchmark stage that its limit cuts short keeps the rows it did and fails nothing
    name=$1 limit=$2; shift 2
    echo "== $name (limit ${limit}s): $*"
    start=$(date +%s)
    timeout -k 5 "$limit" "$@" >"$OUT/$name.log" 2>&1
    rc=$?
    tail -n 25 "$OUT/$name.log"
    took=$(( $(date +%s) - start ))
    echo "== $name: exit $rc after ${took}s"
    timings="$timings $name ${took}/${limit}s$([ "$rc" = 0 ] || echo " (exit $rc)"),"
    case "$rc:$name" in
        0:*) ;;
        124:bench*) echo "== $name: cut short at its limit; the rows done are in its JSON" ;;
        *) status=1 ;;
    esac
}

until_deadline() {  # until_deadline RESERVE: seconds left, less RESERVE for later stages
    left=$(( DEADLINE - $(date +%s) - $1 ))
    echo $(( left > 1 ? left : 1 ))  # never 0: `timeout 0` would mean no limit at all
}

# MPI for the NCCL checks: the machine's own mpi4py where it starts, else the carried wheels
# (`make gpu-check-data` puts them in .whl), under a prefix: `pip --target` leaves out the
# mpich wheel's lib/ (libmpi.so). Where the prefix puts each part depends on the Python's
# install scheme (Debian's adds local/), so each is found.
if ! $PY -c 'from mpi4py import MPI' >/dev/null 2>&1 && ls .whl/mpi4py-*.whl >/dev/null 2>&1; then
    mpi_prefix=/tmp/mpi  # not MPI_HOME, which an MPI image may export
    if $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --prefix "$mpi_prefix" .whl/mpi4py-*.whl .whl/mpich-*.whl; then
        site=$(find "$mpi_prefix" -path '*-packages/mpi4py/__init__.py' | head -n 1)
        lib=$(find "$mpi_prefix" -name 'libmpi.so*' | head -n 1)
        bin=$(find "$mpi_prefix" -name mpiexec | head -n 1)
        export PYTHONPATH="$PYTHONPATH:${site%/mpi4py/__init__.py}" PATH="${bin%/*}:$PATH" \
            LD_LIBRARY_PATH="${lib%/*}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    fi
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
# cuBLASLt (the layers' bias work in the products' epilogues) had not yet run on a GPU when
# this check was written: where the first fit on the device fails and the same fit without it
# passes, every stage after it runs without it (MLP_NO_CUBLASLT=1), so the check still times
# the rest; the failure stays counted, and the summary says so.
lt_note=""
if [ "$rc" != 0 ]; then  # a hang (124) too
    stage train-cuda-no-cublaslt 15 env MLP_NO_CUBLASLT=1 $train --device cuda
    if [ "$rc" = 0 ]; then
        export MLP_NO_CUBLASLT=1
        lt_note="cuBLASLt: the fit failed with it and passed without; the stages after it ran without it"
        echo "gpu-check: $lt_note" | tee -a "$OUT/machine.txt"
    fi
fi
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
for name in train-cuda train-cuda-no-cublaslt train-cuda-bf16 train-cuda-op-by-op train-cpu \
    train-cuda-early-stop train-cuda-nccl; do
    [ -f "$OUT/$name.log" ] || continue
    echo "== $name" && cat "$OUT/$name.log" && rm -f "$OUT/$name.log"
done >"$OUT/train.log"
stage ops 15 $PY -m bench.ops --device cuda
# The benchmark, float32 (TF32 off on both sides: the targets) and bf16 (the limit and ours,
# against our float32: the bf16 target): ours for every workload first, then each PyTorch row
# over every workload, the likeliest fastest first (--order peer). A stage cut short by its
# limit keeps the rows done (the JSON is saved after each) and prints their targets, each
# naming the PyTorch rows it was judged against.
TF32_LIMIT=80
bench="$PY -m bench --devices cuda --no-textbook --epochs 3 --no-cli-rss --no-distributed --no-plot"
stage bench "$(until_deadline $(( TF32_LIMIT + 5 )))" $bench \
    --workloads big,std,std-b256,std-b1024 --precisions float32,bf16 --order peer \
    --peers torch-graph,torch-fused,torch,torch-compile-ro --data synthetic \
    --no-time-to-accuracy --out "$OUT"
# TF32 on for both sides, big (where products dominate), against PyTorch's fused Adam and CUDA
# graph rows; then, on Fashion-MNIST where it was carried, time to 0.89 test accuracy on std:
# ours against the same two PyTorch rows (--data auto: synthetic data, and no race, without it).
if [ "$IMAGES" = "$REAL" ]; then export MLP_DATA_DIR=$REAL; fi
tf32_limit=$(until_deadline 0)
[ "$tf32_limit" -le "$TF32_LIMIT" ] || tf32_limit=$TF32_LIMIT
stage bench-tf32 "$tf32_limit" $bench --workloads big --precisions tf32 \
    --peers torch-fused,torch-graph --data auto --max-epochs 15 --out "$OUT/tf32"
# At most 8 files come back from $OUT: the benchmark logs become one, and the TF32 run's
# Markdown goes (its tables are in the log, its figures in its JSON).
rm -f "$OUT"/tf32/*.md

{
    echo "training runs on $KIND (device, each epoch's metrics and seconds, final accuracy):"
    awk '/^== /{run=$2} /^(device|epoch|test accuracy)/{print "  " run ": " $0}' "$OUT/train.log"
    echo "a layer's products, replayed, and the one-launch ops beside the ops they join (bench.ops):"
    grep -h -e "µs  forward " -e "µs  gradients " -e "^cuBLASLt plans" -e "µs  gather a batch" \
        -e "µs  Adam" "$OUT/ops.log"
    grep -h "^target" "$OUT/bench.log"
    grep -h -e "^fastest PyTorch to" -e "^no PyTorch row reached" -e "^time to accuracy: skipped" \
        "$OUT/bench-tf32.log"
    [ -z "$lt_note" ] || echo "$lt_note"
    echo "stage seconds (taken/limit):${timings%,}"
    echo "gpu-check: $([ "$status" = 0 ] && echo PASSED || echo FAILED); results in $OUT"
} | tee "$OUT/summary.txt"
for name in ops bench bench-tf32; do
    echo "== $name" && cat "$OUT/$name.log" && rm -f "$OUT/$name.log"
done >"$OUT/bench.log.all" && mv "$OUT/bench.log.all" "$OUT/bench.log"
files=$(find "$OUT" -type f | wc -l)
[ "$files" -le 8 ] || echo "gpu-check: $files files under $OUT; only 8 come back" | tee -a "$OUT/summary.txt"
exit $status
