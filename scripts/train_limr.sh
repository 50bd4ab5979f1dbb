#!/usr/bin/env bash
# LIMR: the same PPO run on the prompts LIM selected (1,389 in the paper): lim_selection.py's .jsonl output
# is the training file as it is, no conversion.
#   python lim_selection.py --train_samples_path outputs/math8k/rollouts.jsonl \
#       --original_prompts_path data/math8k.json --output_path outputs/lim/limr.json   # writes outputs/lim/limr.jsonl
#   bash scripts/train_limr.sh
#   LIMR_PROMPTS=data/limr.jsonl bash scripts/train_limr.sh   # the released 1,389 instead of our selection
#   DRY_RUN=1 bash scripts/train_limr.sh
# Hyperparameters, presets and every override: scripts/train_common.sh; hardware and times: scripts/README.md.
# shellcheck source-path=SCRIPTDIR disable=SC2034  # RUN, PROMPTS and PROMPTS_CMD are read by train_common.sh
set -euo pipefail
RUN=limr                                                # outputs/limr/{ckpt,rollouts.jsonl,...}
PROMPTS=${LIMR_PROMPTS:-${OUT:-outputs}/lim/limr.jsonl}  # lim_selection.py --output_path outputs/lim/limr.json
PROMPTS_CMD="python lim_selection.py --train_samples_path outputs/math8k/rollouts.jsonl --original_prompts_path data/math8k.json --output_path outputs/lim/limr.json (or LIMR_PROMPTS=data/limr.jsonl, the released subset)"
# shellcheck source=train_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/train_common.sh"
