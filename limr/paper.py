"""The paper's numbers in one place (LIMR, arXiv 2502.11886; ../shared/DESIGN.md has the full table).

Code imports these instead of repeating literals, so a reader sees every paper value here once.
Training hyperparameters live at the top of the training scripts, which are bash.
"""

# §3.1 and the release's eval/config.json: the system prompt of every rollout and every evaluation.
SYSTEM_PROMPT = "Please reason step by step, and put your final answer within \\boxed{}."

# §2.4: the rule-based reward.
CORRECT = 1.0  # the final \boxed answer matches the gold answer
WRONG = -0.5  # well formatted, wrong answer
BAD_FORMAT = -1.0  # no \boxed, >= 5 \boxed, garbled, long repeats, or cut off without the end-of-turn marker

# §2.2: LIM selection.
THETA = 0.6  # keep s_i >= THETA (the release's 1,389 need >=; the paper writes >)
LINEAR_THETA = 0.7  # the LINEAR baseline's threshold
# Steps per epoch of the fork's step files: 8,523 prompts / 1,024 per batch, the remainder dropped. Our rollout log
# needs none: its lines say their epoch (OpenRLHF 0.11.2 keeps the remainder: 9 steps a pass, limr/rollout_log.py).
STEPS_PER_EPOCH = 8
MAX_EPOCHS = 21

# Dataset sizes of the release (data/README.md).
MATH8K_SIZE = 8523
LIMR_SIZE = 1389
VALIDATION_SIZE = 256
BENCHMARK_SIZES = {"aime24": 30, "amc23": 40, "math500": 500}
