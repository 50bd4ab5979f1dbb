#!/usr/bin/env bash
# Stage 4: evaluate checkpoints on AIME24 / AMC23 / MATH500 (paper §3.1, Table 2). A thin wrapper with the
# release's interface: every flag goes to eval/evaluate.py (`python eval/evaluate.py --help` lists them).
#
#   bash eval/eval.sh --run_path outputs/limr/ckpt --step all        # every global_step{N}_hf, one per GPU at once
#   bash eval/eval.sh --run_path outputs/limr/ckpt --step latest --benchmarks aime24,amc23
#   bash eval/eval.sh --model Qwen/Qwen2.5-Math-7B --name qwen2.5-math-7b   # the base model's row
#
# PYTHON picks the interpreter (default: python3 on PATH, as the training scripts: activate the project's env).
set -euo pipefail
exec "${PYTHON:-python3}" "$(dirname "$0")/evaluate.py" "$@"
