#!/usr/bin/env bash
# LINEAR: the same PPO run on the prompts whose accuracy rises linearly (the paper's LINEAR baseline, θ 0.7).
#   python lim_selection.py --train_samples_path outputs/math8k/rollouts.jsonl \
#       --original_prompts_path data/math8k.json --method linear \
#       --output_path outputs/lim/linear.json                                 # writes outputs/lim/linear.jsonl
#   bash scripts/train_linear.sh
#   DRY_RUN=1 bash scripts/train_linear.sh
# Hyperparameters, presets and every override: scripts/train_common.sh; hardware and times: scripts/README.md.
# shellcheck source-path=SCRIPTDIR disable=SC2034  # RUN, PROMPTS and PROMPTS_CMD are read by train_common.sh
set -euo pipefail
RUN=linear                                                  # outputs/linear/{ckpt,rollouts.jsonl,...}
PROMPTS=${LINEAR_PROMPTS:-${OUT:-outputs}/lim/linear.jsonl}  # lim_selection.py --method linear --output_path outputs/lim/linear.json
PROMPTS_CMD="python lim_selection.py --train_samples_path outputs/math8k/rollouts.jsonl --original_prompts_path data/math8k.json --method linear --output_path outputs/lim/linear.json"
# shellcheck source=train_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/train_common.sh"
