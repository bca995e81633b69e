#!/usr/bin/env bash
# The GPU measurements still owed to the open issues, as few device calls as they fit in.
# Each part fits one 600-second call and writes its logs and JSON under $OUT (the device
# tool returns only the last 12,000 characters of output), each step under its own timeout so
# one stuck step cannot take the rest of the call with it. Run from the repository root:
#
#   scripts/gpu_session.sh deploy     # 1x H100: inference.py kiln rows, HTTP serving
#   scripts/gpu_session.sh deploy_b1  # 1x H100: batch 1 alone, max-autotuned (latency bar)
#   scripts/gpu_session.sh deploy_fuse # 1x H100: kiln-fp16 with and without fused conv + ReLU
#   scripts/gpu_session.sh deploy_default # 1x H100: inference.py, kiln-fp16 as built by default
#   scripts/gpu_session.sh deploy_jit # 1x H100: kiln rows compiled in process (no packages)
#   scripts/gpu_session.sh gpu_tests  # 1x H100: every test marked gpu
#   scripts/gpu_session.sh aoti_check # 1x H100: which AOTInductor settings torch's loader survives
#   scripts/gpu_session.sh aoti_graph # 1x H100: where kiln's packaged engine faults (4 variants)
#   scripts/gpu_session.sh lenet      # 1x H100: train_speed.py LeNet-5, cold and warm cache
#   scripts/gpu_session.sh lenet_conv # 1x H100: small convolutions as products (default) vs cuDNN
#   scripts/gpu_session.sh lenet_variants # 1x H100: kiln's LeNet-5 with each speed option
#   scripts/gpu_session.sh lenet_profile # 1x H100: LeNet-5's kernels per step, kiln vs hand loop
#   scripts/gpu_session.sh first_step # 1x H100: LeNet-5's first step, cold and warm, by phase
#   scripts/gpu_session.sh fused_conv # 1x H100: ResNet-50 with cuDNN's fused conv + ReLU calls
#   scripts/gpu_session.sh fused_conv_b1 # 1x H100: batch 1 autotuned, 1x1 convs fused or as GEMMs
#   scripts/gpu_session.sh b1_convs   # 1x H100: batch 1, each convolution's time and alternatives
#   scripts/gpu_session.sh b1_triton  # 1x H100: batch 1, cuDNN against split-K Triton convolutions
#   scripts/gpu_session.sh b1_launch  # 1x H100: batch 1, a call's time split, Triton convs or not
#   scripts/gpu_session.sh b1_pdl     # 1x H100: batch 1, Triton convs as dependent launches or not
#   scripts/gpu_session.sh b1_build   # 1x H100: batch 1, package build times with TritonConv or not
#   scripts/gpu_session.sh deploy_b1_warm # 1x H100: inference.py batch 1 (jit), warmed 1 s or not
#   scripts/gpu_session.sh deploy_b1_triton # 1x H100: batch 1, kiln with and without them
#   scripts/gpu_session.sh deploy_http # 1x H100: HTTP serving alone (serve_http.py)
#   scripts/gpu_session.sh b1_default # 1x H100: batch-1 packages, default vs without PDL/Triton
#   scripts/gpu_session.sh fixes_check # 1x H100: kiln's Inductor fixes against the image's torch
#   scripts/gpu_session.sh fp8        # 1x H100: precision="fp8" vs bf16 (train_fp8.py, GPU test)
#   scripts/gpu_session.sh resnet     # 1x H100: train_speed.py ResNet-50 (kiln, compile loop)
#   scripts/gpu_session.sh resnet_tuned # 1x H100: the same with Inductor's tuning rows for kiln
#   scripts/gpu_session.sh resnet_cdt # 1x H100: kiln's ResNet-50, coordinate-descent tuned
#   scripts/gpu_session.sh resnet_cdt_warm # 1x H100: the same, cold, then warm beside the loop
#   scripts/gpu_session.sh resnet_long # 1x H100: kiln's defaults on a long fit (tuned), beside the loop
#   scripts/gpu_session.sh resnet_bn  # 1x H100: kiln's ResNet-50 with BatchNorm in ATen's kernels
#   scripts/gpu_session.sh memory     # 1x H100: train_memory.py, peak memory per phase
#   scripts/gpu_session.sh multi      # 4x H100: multi_gpu.py ResNet-50 1/4 GPUs and what-if DDP
#                                     # variants for kiln at 4
#   scripts/gpu_session.sh multi_fsdp # 4x/8x H100: the 1B transformer, FSDP2, 1 and 4 (or 8) GPUs
#   scripts/gpu_session.sh issue8     # 8x H100: multi_resnet and multi_fsdp at 1 and 8 GPUs
#   scripts/gpu_session.sh fsdp_profile # 2x H100: kiln's FSDP step against FSDP2 by hand, profiled
#   scripts/gpu_session.sh tune       # 1x H100: tune_cpu, then tune_gpu (latency: cuda, auto)
#   scripts/gpu_session.sh tune_threads # 1x H100 host: Bayes latency on 1-16 CPU threads
#   scripts/gpu_session.sh tune_lenet # 1x H100: early stopping on LeNet-5, 4 GPU workers
#   scripts/gpu_session.sh debug      # 1x H100: a short tune_lenet (2 worker processes)
#   scripts/gpu_session.sh tune_cpu   # CPU only: tune_quality.py on 16 cores
#
# On a machine of several GPUs, single-GPU parts can share one call, each on its own GPU (the
# n-th part on GPU n-1; "a+b" runs a, then b on the same GPU; logs under $OUT/<part>/):
#
#   scripts/gpu_session.sh parallel deploy resnet+memory lenet+tune_gpu tune_lenet -- tune_cpu
#
# Parts after "--" get no GPU (CUDA_VISIBLE_DEVICES=""). One call, parts one after another:
#
#   scripts/gpu_session.sh seq aoti_check debug tune_gpu
# The parts share the host's CPUs: on 2026-11-27 AOTInductor builds and 16 tuning processes
# beside the speed runs slowed Keras-JAX 3x and kiln's LeNet 1.6x. Put timings whose bars are
# ratios (lenet, resnet, deploy, tune_gpu) alone or beside GPU-only work; memory, correctness
# and tuning-quality parts share well.
# The wheels the device image lacks travel in .whl/ (scripts/fetch_kiln_wheels.sh for kiln and its
# tests, benchmarks/fetch_*_wheels.sh for the competitors; carry ".whl" in the device call).
# Without $OUT the results go to ./gpu_results.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_results}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" >/dev/null && [ ! -e /tmp/site/.kiln-installed ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl >/dev/null 2>&1 && touch /tmp/site/.kiln-installed
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

pack() {  # the device tool returns 8 files from $OUT: every folder under it goes into logs.tgz
    local dirs
    dirs=$(cd "$OUT" && find . -mindepth 1 -maxdepth 1 -type d -printf '%f\n')
    [ -n "$dirs" ] || return 0
    # shellcheck disable=SC2086
    tar czf "$OUT/logs.tgz" -C "$OUT" $dirs && (cd "$OUT" && rm -rf $dirs)
}

precompile() {  # bytecode for every package on the path (kiln, the carried wheels, torch and
    # what torch.compile imports: sympy, networkx, triton, ...), as pip writes it at install
    # time: this image ships them without it, so a first step paid Python compiling 1,315
    # source files (3.3-3.5 s, 2026-11-28) that no installed environment pays
    local dirs
    dirs=$(python3 -c 'import sys, os; print(" ".join(p for p in sys.path if os.path.isdir(p) and p.endswith(("site-packages", "dist-packages", "/tmp/site", "/src"))))')
    [ -e /tmp/pycache/.kiln-precompiled ] && return 0
    # shellcheck disable=SC2086
    python3 -m compileall -q -j 0 $dirs >/dev/null 2>&1
    mkdir -p /tmp/pycache && touch /tmp/pycache/.kiln-precompiled
}

if [ "${1:-}" = seq ]; then  # seq PART...: one part after another, logs under $OUT/<part>/
    shift
    for one in "$@"; do
        echo "#### $one $(date -u +%H:%M:%S)"
        KILN_GPU_PART=1 OUT="$OUT/$one" "$0" "$one"
    done
    pack
    exit 0
fi

if [ "${1:-}" = parallel ]; then
    shift
    precompile
    # each part gets its own share of the host's cores (taskset), so one part's compiling
    # cannot slow another's timed loop: a 4-GPU host's 64 cores give each of 4 parts the 16
    # of a 1-GPU machine
    gpu=0 cpu_only=0 pids=() index=0 parts=0
    for part in "$@"; do [ "$part" = -- ] || parts=$((parts + 1)); done
    share=$(($(nproc) / parts))
    for part in "$@"; do
        if [ "$part" = -- ]; then cpu_only=1; continue; fi
        if [ $cpu_only = 1 ]; then devices=""; else devices=$gpu; gpu=$((gpu + 1)); fi
        cores="$((index * share))-$(((index + 1) * share - 1))"
        index=$((index + 1))
        (
            for one in ${part//+/ }; do
                KILN_GPU_PART=1 CUDA_VISIBLE_DEVICES=$devices OUT="$OUT/$one" \
                    taskset -c "$cores" "$0" "$one" >"$OUT/$one.txt" 2>&1
            done
        ) &
        pids+=($!)
        echo "started $part on GPU '${devices}', cores $cores $(date -u +%H:%M:%S)"
    done
    wait "${pids[@]}"
    for part in "$@"; do
        for one in ${part//+/ }; do [ -e "$OUT/$one.txt" ] && { echo "#### $one"; cat "$OUT/$one.txt"; }; done
    done
    pack
    exit 0
fi

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >"$OUT/gpu.txt" 2>&1
python3 -c "import torch; print(torch.__version__, torch.cuda.get_device_name())" >>"$OUT/gpu.txt"
cat "$OUT/gpu.txt"

case "${1:-}" in
deploy)
    # autotune none: max-autotune of batch 1 outlasted a call's budget (2026-11-27)
    step inference 330 python3 benchmarks/inference.py --repository /tmp/repo \
        --only kiln-fp16,eager-fp32,eager-cudagraph,compile-reduce-overhead \
        --batch-sizes 1,8,64,256 --autotune none --out "$OUT/inference.json"
    # 2026-11-28: 2,534 img/s at 1 client (p99 3.8 ms), 5,606 at 8 (p99 19 ms), before
    # preferred batch sizes; now the levels between, the old wait (A/B), the server alone
    step serve_http 110 python3 benchmarks/serve_http.py --repository /tmp/repo \
        --batch-sizes 1,8,64,256 --autotune none --concurrency 1,2,4,6,8,16 --duration 5 \
        --json "$OUT/serve_http.json"
    step serve_http_wait 90 python3 benchmarks/serve_http.py --repository /tmp/repo \
        --no-preferred-sizes --concurrency 1,2,4,8 --duration 5 --json "$OUT/serve_http_wait.json"
    step serve_echo 90 python3 benchmarks/serve_http.py --engine echo \
        --concurrency 1,2,4,8,16,32 --duration 5 --json "$OUT/serve_echo.json"
    ;;
deploy_fuse)  # kiln-fp16 with cuDNN's fused conv + ReLU calls (the default since 2026-11-28)
    # beside the same engine without them and the competitors, then HTTP with the fused engine
    step inference_fuse 420 python3 benchmarks/inference.py --repository /tmp/repo \
        --only kiln-fp16,kiln-fp16-nofuse,eager-fp32,eager-cudagraph,compile-reduce-overhead \
        --batch-sizes 1,8,64,256 --autotune none --out "$OUT/inference_fuse.json"
    step serve_http 110 python3 benchmarks/serve_http.py --repository /tmp/repo \
        --batch-sizes 1,8,64,256 --autotune none --concurrency 1,2,4,8,16 --duration 5 \
        --json "$OUT/serve_http.json"
    ;;
deploy_default)  # every inference bar in one table: kiln-fp16 as optimize() builds it by
    # default (since 2026-11-28 with the Triton convolutions at batch 1), beside it without them
    # (fuse="cudnn") and the competitors; the cold start from the repository
    step inference_default 520 env KILN_BUILD_STACKS=60 python3 benchmarks/inference.py \
        --repository /tmp/repo \
        --only kiln-fp16,kiln-fp16-cudnn,eager-fp32,eager-cudagraph,compile-reduce-overhead \
        --batch-sizes 1,8,64,256 --out "$OUT/inference_default.json"
    ;;
deploy_b1)  # the batch-1 latency bar (0.35 ms): batch 1 alone, max-autotuned (a build of
    # minutes: it outlasted 4.5 of them beside other work, 2026-11-27), beside reduce-overhead
    step inference_b1 540 python3 benchmarks/inference.py --batch-sizes 1 --autotune small \
        --only kiln-fp16,compile-reduce-overhead,eager-fp32 --out "$OUT/inference_b1.json"
    ;;
deploy_b1_warm)  # batch 1, in-process builds (jit): timed after 1 s of calls, then as before
    # (10 calls): does an idle GPU's slow start hide the Triton convolutions' gain? (2026-11-28,
    # warmed: the Triton engine 0.349 ms, cuDNN's calls alone 0.436; the cold run crashed in
    # torch 2.11's fallback log line, since avoided by kiln.deploy._inductor_fixes)
    step inference_b1_warm 280 env KILN_BUILD_STACKS=30 python3 benchmarks/inference.py \
        --batch-sizes 1 --compile jit \
        --only kiln-fp16,kiln-fp16-cudnn,compile-reduce-overhead,eager-fp32 \
        --out "$OUT/inference_b1_warm.json"
    step inference_b1_cold 200 env KILN_BUILD_STACKS=30 python3 benchmarks/inference.py \
        --batch-sizes 1 --compile jit --only kiln-fp16,kiln-fp16-cudnn --warmup-s 0 \
        --out "$OUT/inference_b1_cold.json"
    ;;
deploy_b1_triton)  # batch 1 with kiln's Triton convolutions (the default since 2026-11-28) and
    # without them (fuse="cudnn"), side by side, beside reduce-overhead and eager fp32
    step inference_b1_triton 560 env KILN_BUILD_STACKS=60 python3 benchmarks/inference.py \
        --batch-sizes 1 \
        --autotune small --only kiln-fp16,kiln-fp16-cudnn,compile-reduce-overhead,eager-fp32 \
        --out "$OUT/inference_b1_triton.json"
    ;;
deploy_http)  # kiln-fp16 built into a repository of its own (timed too), then served over
    # HTTP from it by kiln serve (serve_http.py)
    step inference_http 330 python3 benchmarks/inference.py --repository /tmp/repo_http \
        --only kiln-fp16 --batch-sizes 1,8,64,256 --out "$OUT/inference_http.json"
    step serve_http 150 python3 benchmarks/serve_http.py --repository /tmp/repo_http \
        --concurrency 1,2,4,6,8,16 --duration 5 --json "$OUT/serve_http.json"
    ;;
b1_default)  # batch 1 as AOTInductor packages: the default engine (Triton convolutions as
    # dependent launches, space-to-depth stem) against it without dependent launches and
    # against cuDNN's calls alone (fuse="cudnn"), uint8 images, a call's time split
    B1_COMPILE=aot B1_ENGINES=kiln-triton-img,kiln-triton-nopdl-img,kiln-img "$0" b1_launch
    ;;
fixes_check)  # kiln.deploy._inductor_fixes against the image's torch (2.11 has both costs)
    step fixes_check 120 python3 -m pytest -q -p no:cacheprovider tests/deploy/test_inductor_fixes.py
    ;;
b1_triton_profile)  # batch 1: kiln with and without its Triton convolutions, in process and as
    # AOTInductor packages, each replayed graph profiled (kernels, gaps): where the layers'
    # 57 us went in the package (2026-11-28: 0.374 against 0.377 ms)
    precompile
    step b1_triton_jit 280 python3 scripts/fused_conv_check.py --sizes 1 \
        --runs kiln,kiln-triton --json "$OUT/b1_triton_jit.json"
    step b1_triton_aot 300 python3 scripts/fused_conv_check.py --sizes 1 --aot \
        --runs kiln,kiln-triton --json "$OUT/b1_triton_aot.json"
    ;;
b1_launch)  # batch 1: a call's time split (host, copy, replay, back to back) for the fused
    # graph with and without TritonConv, eager and compiled (2026-11-28, H200: the Triton
    # engine 0.334-0.344 ms a call, the default 0.380-0.391)
    step b1_launch 480 python3 scripts/b1_launch_check.py --compile "${B1_COMPILE:-jit}" \
        ${B1_ENGINES:+--engines "$B1_ENGINES"} ${B1_PDL:+--pdl}
    ;;
b1_pdl)  # batch 1: the Triton convolutions as programmatic dependent launches or not, eager
    # (same configs) and in process; fuse="triton" with and without its space-to-depth stem;
    # beside the default engine
    B1_PDL=1 B1_ENGINES=kiln-triton-img,kiln-triton-nos2d-img,kiln-triton-pdl-img,kiln-img \
        "$0" b1_launch
    ;;
b1_build)  # why the batch-1 package with TritonConv builds in minutes: both graphs built in
    # process in turn, stacks every 15 s of each package build, Inductor's phase times, the
    # packages' cold starts (scripts/b1_build_time.py)
    step b1_build 560 python3 scripts/b1_build_time.py --order "${B1_ORDER:-triton,plain,triton}"
    ;;
b1_triton_check)  # ResNet-50 batch 1 with TritonConv: eager, torch.compile, AOTInductor, with
    # and without split-K (scripts/b1_triton_check.py)
    step b1_triton_check 560 python3 scripts/b1_triton_check.py
    ;;
deploy_jit)  # kiln rows compiled in process (no AOTInductor packages: torch's loader crashed)
    step inference_jit 480 python3 benchmarks/inference.py --compile jit \
        --only kiln-fp16,eager-fp32,eager-cudagraph,compile-reduce-overhead \
        --batch-sizes 1,64,256 --autotune none --out "$OUT/inference_jit.json"
    ;;
gpu_tests)  # (package builds and Triton tuning: the deploy tests alone took minutes)
    # shellcheck disable=SC2086
    step gpu_tests "${GPU_TESTS_LIMIT:-560}" python3 -X faulthandler -m pytest -vv -m gpu \
        -p no:cacheprovider ${GPU_TESTS:-tests}
    ;;
aoti_check)  # which AOTInductor build/load settings survive torch's loader here, with the
    # image's packages alone (the carried wheels made no difference, 2026-11-27), C++ frames of
    # a crash included. A tiny net's build takes 70-100 s there, its load 60-80 (stacks of a
    # slow load are printed). The image's g++ crashed the loader; kiln's compiler choice did not.
    step aoti_check ${AOTI_LIMIT:-280} env PYTHONPATH= python3 scripts/aoti_loader_check.py \
        --only ${AOTI_VARIANTS:-kiln,torch-loader}
    ;;
aoti_graph)  # kiln's packaged fp16 ResNet-50 engine, built and checked in process with its
    # CUDA graphs (2026-11-28: the first replay read the weights of a collected package runner)
    step aoti_graph 330 python3 scripts/aoti_graph_check.py --precision fp16 --jobs 4 \
        --sizes 1,8,64,256 --graphs ${GRAPH_VARIANTS:+--variants $GRAPH_VARIANTS}
    grep -v "^\[kiln.deploy" "$OUT/aoti_graph.log" | grep -v "^ *$" | tail -n 60
    ;;
debug)  # a short tune_lenet: worker processes that capture CUDA graphs trial after trial
    step tune_lenet_smoke 150 python3 benchmarks/tune_lenet.py --sampler sobol --trials 8 \
        --epochs 5 --workers 2 --out "$OUT/tune_lenet_smoke"
    ;;
lenet)
    precompile
    step lenet_cold 330 python3 benchmarks/train_speed.py --workload lenet \
        --only "${LENET_ROWS:-kiln,kiln-foreground,torch-cudagraph-compile-bf16,keras-jax,torch-dataloader}" \
        --json "$OUT/lenet_cold.json"
    # --warm-cache uses the usual cache folders: the first run fills them, the second is timed
    step lenet_prime 80 python3 benchmarks/train_speed.py --workload lenet --only kiln --warm-cache
    step lenet_warm 60 python3 benchmarks/train_speed.py --workload lenet --only kiln \
        --warm-cache --json "$OUT/lenet_warm.json"
    ;;
lenet_gather)  # the gather-in-graph experiment alone: kiln and the hand loops, both ways
    precompile
    step lenet_gather 250 python3 benchmarks/train_speed.py --workload lenet \
        --only kiln,kiln-gather,torch-cudagraph-compile-bf16,torch-cudagraph-compile-bf16-gather \
        --json "$OUT/lenet_gather.json"
    ;;
fp8)  # precision="fp8" against bf16: kiln's fit() and hand loops on a wide MLP (carry torchao)
    precompile
    step train_fp8 300 python3 benchmarks/train_fp8.py
    step fp8_tests 200 python3 -m pytest -q -p no:cacheprovider -m gpu tests/train/test_fp8.py
    ;;
first_step)  # LeNet-5's time to its first step, cold and warm caches, by compile phase
    # (FIRST_STEP_ARGS="--runs cold,warm,cold-fg,warm-fg": also compiling before the first step)
    precompile
    # shellcheck disable=SC2086
    step first_step 300 python3 scripts/first_step_profile.py --device cuda \
        --json "$OUT/first_step.json" ${FIRST_STEP_ARGS:-}
    ;;
fused_conv)  # ResNet-50 with cuDNN's fused convolution + bias (+ add) + ReLU, against kiln's
    # engine and the unfused eager graph, at batch 1, 64 and 256 (scripts/fused_conv_check.py)
    precompile
    step fused_conv 420 python3 scripts/fused_conv_check.py --sizes "${FUSED_SIZES:-1,64,256}" \
        ${FUSED_RUNS:+--runs $FUSED_RUNS} \
        --json "$OUT/fused_conv.json"
    ;;
fused_conv_b1)  # batch 1 max-autotuned: 1x1 convolutions as cuDNN's fused calls (kiln) or as
    # Inductor's matrix products with fused epilogues (kiln-no1x1), and without the pass
    precompile
    step fused_conv_b1 420 python3 scripts/fused_conv_check.py --sizes 1 --autotune small \
        --runs "${FUSED_B1_RUNS:-kiln,kiln-no1x1,kiln-nofuse}" --json "$OUT/fused_conv_b1.json"
    ;;
b1_convs)  # batch 1 fp16, per convolution: cuDNN's fused call, plain cuDNN, cuBLASLt, the stem as
    # space-to-depth, Inductor's autotuned GEMMs (scripts/b1_conv_times.py)
    precompile
    step b1_convs 420 python3 scripts/b1_conv_times.py --json "$OUT/b1_convs.json"
    ;;
b1_triton)  # batch 1 fp16, per convolution: cuDNN's fused call against split-K Triton kernels, and
    # the whole graph with the faster of each (scripts/b1_triton_conv.py)
    precompile
    step b1_triton 540 python3 scripts/b1_triton_conv.py --budget "${B1_TRITON_BUDGET:-330}" \
        --json "$OUT/b1_triton.json"
    ;;
fused_conv_limit0)  # the same with every cuDNN plan timed per convolution (benchmark_limit 0)
    precompile
    step fused_conv_limit0 420 python3 scripts/fused_conv_check.py --benchmark-limit 0 \
        --sizes "${FUSED_SIZES:-1,64,256}" ${FUSED_RUNS:+--runs $FUSED_RUNS} \
        --json "$OUT/fused_conv_limit0.json"
    ;;
lenet_profile)  # each kernel of LeNet-5's step, per step: kiln, the hand loop, kiln ungraphed
    precompile
    step lenet_profile 200 python3 scripts/lenet_kernel_profile.py --steps 50 \
        --runs "${PROFILE_RUNS:-kiln,hand,kiln-no-graphs}" --json "$OUT/lenet_profile.json"
    grep -v "^\[" "$OUT/lenet_profile.log" | head -n 150
    ;;
lenet_conv)  # LeNet-5's products: the small convolutions' (the default since 2026-11-28:
    # 0.105 against cuDNN's 0.136 s/epoch on an H100) against cuDNN, and the Dense
    # layers' padded to multiples of 8 (kiln-dense-aligned: 0.113 against 0.101 on an H200)
    # and the partial batch captured after one warm-up (kiln-partial-graph: 0.101), both off
    precompile
    step lenet_conv 240 python3 benchmarks/train_speed.py --workload lenet \
        --only kiln,kiln-dense-aligned,kiln-partial-graph,kiln-cudnn,torch-cudagraph-compile-bf16 \
        --json "$OUT/lenet_conv.json"
    step lenet_conv_graph 80 env TORCH_LOGS=graph_code python3 scripts/lenet_kernel_profile.py \
        --steps 50 --runs kiln,kiln-dense-aligned --json "$OUT/lenet_conv_profile.json"
    grep -c "conv2d_as_matmul" "$OUT/lenet_conv_graph.log"
    grep -v "^\[\|^V1" "$OUT/lenet_conv_graph.log" | head -n 45
    ;;
lenet_variants)  # which of kiln's options takes LeNet-5's step towards 0.12 s/epoch
    precompile
    step lenet_variants 330 python3 benchmarks/train_speed.py --workload lenet \
        --only kiln,kiln-no-cl,kiln-fp32,kiln-cdt,kiln-autotune,torch-cudagraph-compile-bf16 \
        --json "$OUT/lenet_variants.json"
    ;;
resnet)
    precompile
    step resnet 380 python3 benchmarks/train_speed.py --workload resnet50 \
        --only kiln,torch-compile-bf16-cl,keras-jax --json "$OUT/resnet.json"
    ;;
resnet_tuned)  # Inductor's tuning for kiln's ResNet-50 step, beside the compile loop
    # (kiln-autotune, max-autotune, outlasted its 300 s on 2026-11-28: left out)
    precompile
    step resnet_tuned 570 python3 benchmarks/train_speed.py --workload resnet50 \
        --only kiln,torch-compile-bf16-cl,kiln-cdt --json "$OUT/resnet_tuned.json"
    ;;
resnet_cdt)  # coordinate-descent tuning of kiln's ResNet-50 step with the most time a call
    # gives it (it outlasted 300 s twice), beside the compile loop
    precompile
    step resnet_cdt 580 python3 benchmarks/train_speed.py --workload resnet50 \
        --only kiln-cdt,torch-compile-bf16-cl --timeout 470 --json "$OUT/resnet_cdt.json"
    ;;
resnet_cdt_warm)  # the same, cold and then from the cache it filled, beside kiln's defaults and
    # the compile loop (all with --warm-cache: each keeps its compile cache for the next)
    precompile
    step resnet_cdt_cold 340 python3 benchmarks/train_speed.py --workload resnet50 \
        --only kiln-cdt --warm-cache --timeout 330 --json "$OUT/resnet_cdt_cold.json"
    step resnet_cdt_warm 230 python3 benchmarks/train_speed.py --workload resnet50 \
        --only kiln,kiln-cdt,torch-compile-bf16-cl --warm-cache --timeout 110 \
        --json "$OUT/resnet_cdt_warm.json"
    ;;
resnet_long)  # kiln's defaults on a fit planned past 20,000 steps (so "auto" tunes kernels,
    # cold cache), stopped after 3 epochs of 20 steps, beside the compile loop and a short fit
    precompile
    step resnet_long 560 python3 benchmarks/train_speed.py --workload resnet50 --epochs 3 \
        --only kiln-long,torch-compile-bf16-cl,kiln --timeout 400 --json "$OUT/resnet_long.json"
    ;;
resnet_bn)  # kiln's ResNet-50 step with BatchNorm (or only its backward) left to ATen's CUDA
    # kernels instead of Inductor's decomposition, beside the compile loop
    precompile
    step resnet_bn 570 python3 benchmarks/train_speed.py --workload resnet50 \
        --only kiln,kiln-bn-aten,kiln-bn-aten-bwd,torch-compile-bf16-cl --timeout 200 \
        --json "$OUT/resnet_bn.json"
    ;;
memory)
    step train_memory 170 python3 benchmarks/train_memory.py \
        --only hand-eager,hand-compile,kiln,kiln-no-compile
    ;;
memory_snapshots)
    step memory_snapshots 200 python3 benchmarks/train_memory.py --only hand-eager,kiln-no-compile \
        --steps 2 --snapshot "$OUT/memory_snapshots"
    ;;
multi)
    # about 9 runs of 1-2 minutes each (torchrun start, compile, 3 epochs); LeNet's bar is met.
    # On 8 GPUs (issue 8): MULTI_GPUS=1,8 MULTI_VARIANTS= (four runs)
    step multi_resnet 570 python3 benchmarks/multi_gpu.py --model resnet50 \
        --gpus "${MULTI_GPUS:-1,4}" \
        --kiln-variants "${MULTI_VARIANTS-no-optimize-ddp,static-graph,bucket-100}"
    ;;
multi_fsdp)  # 4x (or 8x: FSDP_GPUS=1,8) H100: the 1.04B transformer fully sharded, kiln vs
    # FSDP2 by hand; four runs of compile + 4 epochs of 20 steps of 8 sequences a GPU (3
    # epochs of 10 moved kiln/raw by 5% between calls, 2026-11-28)
    step multi_fsdp 570 python3 benchmarks/multi_gpu.py --model transformer \
        --gpus "${FSDP_GPUS:-1,4}" --batch-size 8 --steps 20 --epochs 4 \
        --kiln-variants "${FSDP_VARIANTS:-}"
    ;;
issue8)  # 8x H100/H200, the 8-GPU issue in one call: ResNet-50 DDP and the 1B transformer
    # (FSDP, kiln's default and full-shard), each at 1 and 8 GPUs beside raw PyTorch. On 4
    # H200s (2026-11-28) the two parts took 227 and 274 s: close to one call's 600. Each run's
    # line is printed as it ends; if a part is cut short, run it alone: MULTI_GPUS=1,8
    # MULTI_VARIANTS= ... multi, or FSDP_GPUS=1,8 FSDP_VARIANTS=full-shard ... multi_fsdp.
    step multi_resnet 270 python3 benchmarks/multi_gpu.py --model resnet50 --gpus 1,8
    step multi_fsdp 300 python3 benchmarks/multi_gpu.py --model transformer --gpus 1,8 \
        --batch-size 8 --steps 20 --epochs 4 --kiln-variants full-shard
    ;;
fsdp_profile)  # 2x (or more) H100: where kiln's FSDP step of the 1B transformer goes, against
    # FSDP2 by hand, compiled, eager and with each block compiled on its own (2 GPUs: kiln 110
    # against 134 seq/s by hand, H200, 2026-11-28)
    step fsdp_profile 500 python3 -m torch.distributed.run --standalone \
        --nproc-per-node "${PROFILE_GPUS:-2}" scripts/fsdp_profile.py
    ;;
tune)
    KILN_GPU_PART=1 "$0" tune_cpu
    KILN_GPU_PART=1 "$0" tune_gpu
    ;;
tune_cpu)
    step tune_quality 420 python3 benchmarks/tune_quality.py --stop-at-target --budget 60 \
        --jobs 16 --out "$OUT/tune_quality"
    ;;
tune_gpu)
    # raw suggestions, then a worker's wait in ask with precompute (2 s trials); 2026-11-28:
    # auto 0.75 / 1.05 s, cuda 1.12 / 1.43 s (p50 / p95, 200 trials, raw, 20 each)
    step tune_latency 200 python3 benchmarks/tune_quality.py --samplers bayes \
        --problems branin_currin --seeds 1 --budget 10 --random-budget 20 \
        --latency-devices ${TUNE_DEVICES:-auto} --latency-sizes 200 --latency-reps 20 \
        --latency-precompute --latency-trial-s 2 \
        --out "$OUT/tune_latency"
    ;;
tune_threads)  # suggestion latency on the CPU against torch's thread count
    step tune_threads 200 python3 benchmarks/tune_quality.py --samplers bayes \
        --problems branin_currin --seeds 1 --budget 10 --latency-devices cpu \
        --latency-threads 1,2,4,8,16 --latency-sizes 200 --latency-reps 10 \
        --out "$OUT/tune_threads"
    ;;
tune_lenet)
    step tune_lenet 540 python3 benchmarks/tune_lenet.py --sampler sobol --max-minutes 8.3 \
        --out "$OUT/tune_lenet"
    ;;
*)
    echo "usage: $0 deploy|deploy_fuse|deploy_default|deploy_b1|deploy_b1_warm|deploy_b1_triton|deploy_http|b1_default|fixes_check|b1_triton_check|b1_triton_profile|b1_launch|b1_pdl|b1_build|deploy_jit|gpu_tests|aoti_check|aoti_graph|debug|lenet|lenet_conv|lenet_profile|lenet_variants|first_step|fused_conv|fused_conv_b1|b1_convs|b1_triton|fused_conv_limit0|fp8|lenet_gather|resnet|resnet_tuned|resnet_long|memory|multi|multi_fsdp|issue8|fsdp_profile|tune|tune_cpu|tune_gpu|tune_threads|tune_lenet|seq PART...|parallel PART..." >&2
    exit 2
    ;;
esac
[ -n "${KILN_GPU_PART:-}" ] || pack
