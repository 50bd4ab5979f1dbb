#!/usr/bin/env bash
# Prove a node before a multi-day run: every assumption the run makes, one line per check (`ok` or `FAIL` with its
# fix), all checks whatever fails, then exit 1 if any failed. The launcher runs it first on every node; it runs alone:
#   bash scripts/preflight.sh                                   # PRESET=paper, this node as the head (NODE_RANK 0)
#   PRESET=node bash scripts/preflight.sh
#   NODE_RANK=1 MASTER_ADDR=node0 bash scripts/preflight.sh     # a worker node
#   PROMPTS=outputs/lim/limr.jsonl bash scripts/preflight.sh    # the run's prompt file (default data/math8k.jsonl)
# Checks: NVIDIA driver against torch's CUDA, GPU count and memory, CPU RAM and disk for the preset, the CUDA toolkit,
# DeepSpeed's CPU Adam (built once here, cached for the run), the pinned imports, the reward server's address without a
# proxy, Ray's ports, the data files, wandb's key. The checks themselves: scripts/preflight.py.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
# shellcheck source-path=SCRIPTDIR source=lib/launch.sh
source scripts/lib/launch.sh  # apply_preset, derive_endpoints: the launcher's own layout and addresses
PRESET=${PRESET:-paper}
MODEL_FROM_ENV=${MODEL:-}
MODEL=${MODEL:-Qwen/Qwen2.5-Math-7B}
[[ $PRESET == smoke ]] && smoke_defaults
OUT=${OUT:-outputs}
TRAIN_STEPS=${TRAIN_STEPS:-189}
SAVE_STEPS=${SAVE_STEPS:-1}
NODE_RANK=${NODE_RANK:-${PET_NODE_RANK:-0}}
MASTER_ADDR=${MASTER_ADDR:-$HOSTNAME}
REWARD_PORT=${REWARD_PORT:-5000}
REWARD_TOKEN=${REWARD_TOKEN:-}
RAY_PORT=${RAY_PORT:-6379}
PROMPTS=${PROMPTS:-data/math8k.jsonl}
VALIDATION=${VALIDATION:-data/validation.jsonl}
PYTHON=${PYTHON:-python3}
apply_preset
derive_endpoints
exec "$PYTHON" scripts/preflight.py --preset "$PRESET" --gpus "$GPUS_PER_NODE" --node_rank "$NODE_RANK" \
    --master_addr "$MASTER_ADDR" --reward_host "$REWARD_HOST" --reward_bind "$REWARD_BIND" --reward_port "$REWARD_PORT" \
    --ray_port "$RAY_PORT" --out "$OUT" --train_steps "$TRAIN_STEPS" --save_steps "$SAVE_STEPS" \
    --data "$(abs "$PROMPTS")" "$(abs "$VALIDATION")" --python "$PYTHON"
