#!/usr/bin/env bash
# FULL: PPO from Qwen2.5-Math-7B on all 8,523 MATH-8k prompts (the paper's MATH-FULL). Its rollout log,
# outputs/math8k/rollouts.jsonl, is what LIM selection scores; its checkpoints are outputs/math8k/ckpt.
#   python data/prepare.py                  # once: data/math8k.jsonl and data/validation.jsonl
#   bash scripts/train_math.8k.sh           # PRESET=paper (2 nodes: NODE_RANK=1 MASTER_ADDR=... on the second)
#   PRESET=node bash scripts/train_math.8k.sh
#   DRY_RUN=1 bash scripts/train_math.8k.sh # print every command; start nothing
# Hyperparameters, presets and every override: scripts/train_common.sh; hardware and times: scripts/README.md.
# shellcheck source-path=SCRIPTDIR disable=SC2034  # RUN, PROMPTS and PROMPTS_CMD are read by train_common.sh
set -euo pipefail
RUN=math8k                                    # outputs/math8k/{ckpt,rollouts.jsonl,...}
PROMPTS=${MATH8K_PROMPTS:-data/math8k.jsonl}  # the paper's 8,523 prompts (OpenRLHF JSONL)
PROMPTS_CMD="python data/prepare.py"
# shellcheck source=train_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/train_common.sh"
