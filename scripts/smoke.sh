#!/usr/bin/env bash
# A smoke run before a five-day run: every hand-off of the real path on one GPU in minutes. It trains
# Qwen2.5-Math-1.5B (MODEL=...) with PPO on the first 40 MATH-8k prompts (steps of 16, 16 and a partial 8 per pass,
# two passes), evaluates 16 validation rows and saves a checkpoint every pass, with the reward server's token on;
# then runs lim_selection.py on its rollout log and eval/eval.sh (vLLM) on its last checkpoint.
#   bash scripts/smoke.sh
#   DRY_RUN=1 bash scripts/smoke.sh     # print every command; writes only the two small prompt files
# Needs python data/prepare.py first. Everything goes under $OUT/smoke (default outputs/smoke).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=${OUT:-outputs}
SMOKE_DIR=$OUT/smoke
SMOKE_PROMPTS=${SMOKE_PROMPTS:-40}        # 40 = 16 + 16 + 8: a partial last step in every pass
SMOKE_VALIDATION=${SMOKE_VALIDATION:-16}  # in-training eval rows
MATH8K_JSON=${MATH8K_JSON:-data/math8k.json}
VALIDATION_JSON=${VALIDATION_JSON:-data/validation.json}
PYTHON=${PYTHON:-python3}
DRY_RUN=${DRY_RUN:-0}
export PRESET=smoke
export REWARD_TOKEN=${REWARD_TOKEN:-smoke-$RANDOM$RANDOM}  # the token path is part of what is checked
export ROLLOUT_BATCH_SIZE=${ROLLOUT_BATCH_SIZE:-16} TRAIN_STEPS=${TRAIN_STEPS:-6}

for f in "$MATH8K_JSON" "$VALIDATION_JSON"; do
    [[ -f $f ]] || { echo "error: $f not found: make it with: python data/prepare.py" >&2; exit 2; }
done
[[ $SMOKE_PROMPTS =~ ^[1-9][0-9]*$ && $SMOKE_VALIDATION =~ ^[1-9][0-9]*$ ]] \
    || { echo "error: SMOKE_PROMPTS and SMOKE_VALIDATION must be whole numbers >= 1" >&2; exit 2; }

# 1. The run's prompt files: the first rows of MATH-8k and of the validation set, in both formats (limr.dataset).
# shellcheck disable=SC2016  # a Python program, not shell
MAKE='import sys
from limr.dataset import write_prompt_files
from limr.jsonio import read_json
src, n, dst, split = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
print(write_prompt_files(dst, read_json(src)[:n], split=split))'
mkdir -p "$SMOKE_DIR"
echo "+ the first $SMOKE_PROMPTS prompts of $MATH8K_JSON and $SMOKE_VALIDATION rows of $VALIDATION_JSON -> $SMOKE_DIR"
PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} "$PYTHON" -c "$MAKE" "$MATH8K_JSON" "$SMOKE_PROMPTS" "$SMOKE_DIR/prompts.json" train >/dev/null
PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} "$PYTHON" -c "$MAKE" "$VALIDATION_JSON" "$SMOKE_VALIDATION" "$SMOKE_DIR/validation.json" eval >/dev/null

# 2. Training: the launcher with PRESET=smoke (scripts/train_common.sh), on those files.
MATH8K_PROMPTS=$SMOKE_DIR/prompts.jsonl VALIDATION=$SMOKE_DIR/validation.jsonl OUT=$SMOKE_DIR \
    bash scripts/train_math.8k.sh

# 3. LIM on its rollout log (one pass = one epoch: the log's lines say theirs), 4. vLLM evaluation of its last
# checkpoint.
STEPS_PER_PASS=$(((SMOKE_PROMPTS + ROLLOUT_BATCH_SIZE - 1) / ROLLOUT_BATCH_SIZE))
# shellcheck disable=SC2034  # LIM and EVAL are read through declare -n below
LIM=("$PYTHON" lim_selection.py --train_samples_path "$SMOKE_DIR/math8k/rollouts.jsonl" --original_prompts_path
    "$SMOKE_DIR/prompts.json" --output_path "$SMOKE_DIR/lim/limr.json" --max_epochs "$((TRAIN_STEPS / STEPS_PER_PASS))"
    --no_plots)
# shellcheck disable=SC2034
EVAL=(bash eval/eval.sh --run_path "$SMOKE_DIR/math8k/ckpt" --step latest --name smoke --out "$SMOKE_DIR/eval"
    --limit 8 --max_new_tokens 1024)
for cmd in LIM EVAL; do
    declare -n words=$cmd
    printf '+'
    printf ' %q' "${words[@]}"
    printf '\n'
    [[ $DRY_RUN == 1 ]] || PYTHON=$PYTHON PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} "${words[@]}"
done
