#!/usr/bin/env bash
# The GPU measurements still owed to the open issues, as few device calls as they fit in.
# Each part fits one 600-second call and writes its logs and JSON under $OUT (the device
# tool returns only the last 12,000 characters of output), each step under its own timeout so
# one stuck step cannot take the rest of the call with it. Run from the repository root:
#
#   scripts/gpu_session.sh deploy     # 1x H100: inference.py kiln rows, HTTP serving, GPU tests
#   scripts/gpu_session.sh lenet      # 1x H100: train_speed.py LeNet-5, cold and warm cache
#   scripts/gpu_session.sh resnet     # 1x H100: train_speed.py ResNet-50 (kiln, compile loop)
#   scripts/gpu_session.sh memory     # 1x H100: train_memory.py, where fit()'s extra 8 GB comes from
#   scripts/gpu_session.sh multi      # 4x H100: multi_gpu.py ResNet-50 1/4 GPUs and what-if DDP
#                                     # variants for kiln at 4
#   scripts/gpu_session.sh tune       # 1x H100: tune_quality.py on 16 cores + GPU latency
#   scripts/gpu_session.sh tune_lenet # 1x H100: early stopping on LeNet-5, 4 GPU workers
#
# The wheels the device image lacks travel in .whl/ (benchmarks/fetch_*_wheels.sh and pip
# download; carry ".whl" in the device call). Without $OUT the results go to ./gpu_results.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_results}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl >/dev/null 2>&1
fi
export PYTHONPATH=/tmp/site:$PWD/src
export CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
# the image ships torch without bytecode: compile it once here rather than inside the timings
export PYTHONPYCACHEPREFIX=/tmp/pycache

step() {  # step NAME SECONDS COMMAND...: run one step under a timeout, its output in $OUT/NAME.log
    local name=$1 limit=$2
    shift 2
    echo "== $name (limit ${limit}s) $(date -u +%H:%M:%S)"
    timeout --kill-after=10 "$limit" "$@" >"$OUT/$name.log" 2>&1
    echo "== $name: exit $? $(date -u +%H:%M:%S)"
    tail -n 25 "$OUT/$name.log"
}

precompile() {  # bytecode for torch, so time to first step is not Python compiling its .py files
    local torch_dir
    torch_dir=$(python3 -c 'import os, torch; print(os.path.dirname(torch.__file__))')
    python3 -m compileall -q -j 0 "$torch_dir" >/dev/null 2>&1
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >"$OUT/gpu.txt" 2>&1
python3 -c "import torch; print(torch.__version__, torch.cuda.get_device_name())" >>"$OUT/gpu.txt"
cat "$OUT/gpu.txt"

case "${1:-}" in
deploy)
    step inference 300 python3 benchmarks/inference.py --repository /tmp/repo \
        --only kiln-fp16,eager-fp32,eager-cudagraph,compile-reduce-overhead \
        --out "$OUT/inference.json"
    step serve_http 120 python3 benchmarks/serve_http.py --repository /tmp/repo \
        --concurrency 1,8,32,64 --duration 5 --json "$OUT/serve_http.json"
    step gpu_tests 150 python3 -m pytest -q -m gpu -p no:cacheprovider tests/deploy tests/train
    ;;
lenet)
    precompile
    step lenet_cold 250 python3 benchmarks/train_speed.py --workload lenet \
        --only kiln,torch-cudagraph-compile-bf16,keras-jax,torch-dataloader \
        --json "$OUT/lenet_cold.json"
    # --warm-cache uses the usual cache folders: the first run fills them, the second is timed
    step lenet_prime 100 python3 benchmarks/train_speed.py --workload lenet --only kiln --warm-cache
    step lenet_warm 80 python3 benchmarks/train_speed.py --workload lenet --only kiln \
        --warm-cache --json "$OUT/lenet_warm.json"
    ;;
resnet)
    precompile
    step resnet 400 python3 benchmarks/train_speed.py --workload resnet50 \
        --only kiln,torch-compile-bf16-cl,keras-jax --json "$OUT/resnet.json"
    ;;
memory)
    step train_memory 330 python3 benchmarks/train_memory.py
    step memory_snapshots 200 python3 benchmarks/train_memory.py --only hand-eager,kiln-no-compile \
        --steps 2 --snapshot "$OUT/memory_snapshots"
    ;;
multi)
    # about 9 runs of 1-2 minutes each (torchrun start, compile, 3 epochs); LeNet's bar is met
    step multi_resnet 570 python3 benchmarks/multi_gpu.py --model resnet50 --gpus 1,4 \
        --kiln-variants no-optimize-ddp,static-graph,bucket-100
    ;;
tune)
    step tune_quality 420 python3 benchmarks/tune_quality.py --stop-at-target --budget 60 \
        --jobs 16 --out "$OUT/tune_quality"
    step tune_latency 150 python3 benchmarks/tune_quality.py --samplers bayes \
        --problems branin_currin --seeds 1 --budget 10 --latency-devices cuda \
        --latency-sizes 50,200 --out "$OUT/tune_latency"
    ;;
tune_lenet)
    step tune_lenet 560 python3 benchmarks/tune_lenet.py --sampler sobol --max-minutes 9 \
        --out "$OUT/tune_lenet"
    ;;
*)
    echo "usage: $0 deploy|lenet|resnet|memory|multi|tune|tune_lenet" >&2
    exit 2
    ;;
esac
