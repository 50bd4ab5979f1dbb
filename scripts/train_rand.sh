#!/usr/bin/env bash
# RAND: the same PPO run on 1,389 MATH-8k prompts drawn at random (seeded), the paper's MATH-RAND baseline.
#   python lim_selection.py --train_samples_path outputs/math8k/rollouts.jsonl \
#       --original_prompts_path data/math8k.json --method rand --num_samples 1389 \
#       --output_path outputs/lim/rand.json                                   # writes outputs/lim/rand.jsonl
#   bash scripts/train_rand.sh
#   DRY_RUN=1 bash scripts/train_rand.sh
# Hyperparameters, presets and every override: scripts/train_common.sh; hardware and times: scripts/README.md.
# shellcheck source-path=SCRIPTDIR disable=SC2034  # RUN, PROMPTS and PROMPTS_CMD are read by train_common.sh
set -euo pipefail
RUN=rand                                                # outputs/rand/{ckpt,rollouts.jsonl,...}
PROMPTS=${RAND_PROMPTS:-${OUT:-outputs}/lim/rand.jsonl}  # lim_selection.py --method rand --output_path outputs/lim/rand.json
PROMPTS_CMD="python lim_selection.py --train_samples_path outputs/math8k/rollouts.jsonl --original_prompts_path data/math8k.json --method rand --num_samples 1389 --output_path outputs/lim/rand.json"
# shellcheck source=train_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/train_common.sh"
