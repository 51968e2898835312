#!/usr/bin/env bash
# Run the GPU parts of our benchmarks on a bare CUDA machine (one GPU with >= 40 GB; measured on
# an H100 80GB).
#
#   benchmarks/gpu_run.sh [generate] [reward] [embedding] [policy]     (default: all four)
#
# - generate:  bench_generate.py --gpu-only: full-size FLUX.1-Fill-dev architecture, random bf16
#              weights, our FluxFillSampler, 28 steps, true CFG; s/candidate and peak GPU memory
#              at 512 and 1024 px (batch 1) and 1024 px in a batch of 4.
# - reward:    bench_reward.py --gpu-only: Qwen2.5-VL-7B architecture, random bf16 weights, our
#              RewardScorer; pairs/s without and with gradients to the pixels, peak GPU memory;
#              then reward SFT steps through our trainer in mixed precision (fp32 master weights,
#              bf16 autocast, gradient checkpointing, lr 1e-6): the loss on a fixed batch falls,
#              the weights change, s/step and peak memory (needs ~130 GB: an H200, or 2 GPUs).
# - embedding: bench_select_embedding.py on cuda at ViT-L/14 size (images/s, decode included).
# - policy:    bench_policy.py --gpu-only: one ReFL iteration at 512 px (28-step reference rollout,
#              partial policy rollout to t ~ U{14..27}, one grad step, VAE decode and a 7B-shaped
#              reward model with grad; LoRA rank 64, bf16 autocast, gradient checkpointing) with and
#              without the reference cache: s/iteration, peak GPU memory, FLOPs (FlopCounterMode,
#              recomputation included) and utilisation of the 989 TFLOPS bf16 peak (target >= 35%).
#
# Needs python3 with torch (CUDA), transformers, diffusers, open_clip_torch, pillow, numpy,
# pyarrow, tqdm. On a machine without them, put their wheels in .whl/ at the repository root
# (e.g. ``pip download --no-deps --only-binary=:all: --python-version 3.12 -d .whl diffusers==0.42.1
# transformers==5.23.0 ...``): they are installed into /tmp/site and put first on PYTHONPATH. The
# package itself is used from src/ (no install needed).
#
# Results: $OUT (default benchmarks/results/gpu): nvidia-smi.txt, <part>.log and the benchmarks'
# JSON files (generate_gpu.json, reward_gpu.json, select_embedding_cuda.json, policy_gpu.json). Each part runs in
# its own process under its own time limit; a failing part does not stop the others, and the
# script exits non-zero if any failed.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-benchmarks/results/gpu}"
mkdir -p "$OUT"
parts=("$@")
[ ${#parts[@]} -eq 0 ] && parts=(generate reward embedding policy)

site=""
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || { echo "installing .whl/*.whl failed" >&2; exit 1; }
    site="/tmp/site:"
fi
export PYTHONPATH="${site}$(pwd)/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 ONEREWARD_BENCH_OUT="$OUT" ONEREWARD_LOG_LEVEL=WARNING
export TOKENIZERS_PARALLELISM=false

nvidia-smi 2>&1 | tee "$OUT/nvidia-smi.txt"
python3 - <<'EOF' 2>&1 | tee -a "$OUT/nvidia-smi.txt"
import importlib, os, torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "device",
      torch.cuda.get_device_name() if torch.cuda.is_available() else None, "cpus", os.cpu_count())
for name in ("transformers", "diffusers", "open_clip", "tokenizers", "huggingface_hub"):
    try:
        print(name, importlib.import_module(name).__version__)
    except Exception as exc:  # report, the part that needs it fails with its own message
        print(name, "missing:", exc)
EOF

failed=()
run_part() {  # name, time limit in seconds, command...
    local name=$1 limit=$2
    shift 2
    echo "=== $name ($(date -u +%H:%M:%S), limit ${limit}s): $*"
    local t0=$SECONDS
    if ! timeout "$limit" "$@" 2>&1 | tee "$OUT/$name.log"; then
        failed+=("$name")
        echo "=== $name FAILED after $((SECONDS - t0))s"
    else
        echo "=== $name done in $((SECONDS - t0))s"
    fi
}
for part in "${parts[@]}"; do
    case "$part" in
        generate) run_part generate_gpu "${GENERATE_LIMIT:-300}" python3 benchmarks/bench_generate.py --gpu-only ;;
        reward) run_part reward_gpu "${REWARD_LIMIT:-300}" python3 benchmarks/bench_reward.py --gpu-only ;;
        embedding)
            run_part select_embedding_gpu "${EMBEDDING_LIMIT:-120}" python3 benchmarks/bench_select_embedding.py \
                --device cuda --skip-tiny --vit-arch ViT-L-14 --vit-images "${VIT_IMAGES:-512}" --workers 0,8
            ;;
        policy) run_part policy_gpu "${POLICY_LIMIT:-600}" python3 benchmarks/bench_policy.py --gpu-only ;;
        *) echo "unknown part $part (expected generate, reward, embedding, policy)" >&2; failed+=("$part") ;;
    esac
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "failed: ${failed[*]}"
    exit 1
fi
echo "all parts done; results in $OUT"
