#!/usr/bin/env bash
# The shared launcher of the paper's four PPO runs on stock OpenRLHF 0.11.2. It is sourced by
# train_math.8k.sh (FULL), train_limr.sh (LIMR), train_rand.sh (RAND) and train_linear.sh (LINEAR),
# which set only RUN (the output folder), PROMPTS (the prompt file) and PROMPTS_CMD (what makes it).
#
#   bash scripts/train_math.8k.sh                           # PRESET=paper: run on the head node (NODE_RANK 0) ...
#   NODE_RANK=1 MASTER_ADDR=node0 bash scripts/train_math.8k.sh   # ... and on the second node (node0 = head's hostname)
#   PRESET=node bash scripts/train_limr.sh                  # 1 node x 8 GPUs, everything colocated
#   PRESET=single bash scripts/train_limr.sh                # 1 x 80 GB GPU, Qwen2.5-Math-1.5B
#   bash scripts/preflight.sh                               # first: prove this node (the launch runs it too)
#   bash scripts/smoke.sh                                   # PRESET=smoke: 40 prompts on one GPU, minutes
#   DRY_RUN=1 bash scripts/train_math.8k.sh                 # print every command that would run; start nothing
#   sbatch scripts/slurm_example.sbatch                     # the paper preset on a Slurm cluster
#
# Every variable below can be overridden from the environment (ACTOR_LR=1e-6 bash scripts/train_limr.sh).
# On the head node it checks its inputs, starts the reward server in the background (stopped by the EXIT
# trap), starts a Ray head (or uses RAY_ADDRESS), waits for every node's GPUs, then runs the OpenRLHF driver in
# the foreground: Ctrl-C or a crash ends the whole run. Other nodes join the head's Ray cluster and block.
# Multi-node runs need a filesystem shared by all nodes (the repo, data, model and outputs/).
# scripts/README.md has the hardware each preset needs and the commands of the four paper runs and eval.
# This file is the settings and the order of the launch; how each step works (presets, checks, the even split,
# the reward server, Ray) is in scripts/lib/launch.sh, one named function each.

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    echo "error: train_common.sh is sourced by the run scripts: bash scripts/train_math.8k.sh (or train_limr.sh," \
        "train_rand.sh, train_linear.sh)" >&2
    exit 2
fi
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."  # the repo root: relative paths are relative to it
ROOT=$PWD
# shellcheck source-path=SCRIPTDIR source=lib/launch.sh
source scripts/lib/launch.sh  # functions only: nothing runs until the launch below calls them

PRESET=${PRESET:-paper}    # paper | node | single | smoke: where the models run (apply_preset)
DRY_RUN=${DRY_RUN:-0}      # 1: print every command that would run, start nothing
BACKEND=${BACKEND:-openrlhf}  # openrlhf: the paper's path (below) | verl: the same block on verl 0.9.1 (lib/verl.sh)
OUT=${OUT:-outputs}        # the root of every artifact (gitignored): $OUT/$RUN/{ckpt,rollouts.jsonl,...}
MODEL_FROM_ENV=${MODEL:-}  # the single preset changes the model unless MODEL is set
if [[ $PRESET == smoke ]]; then
    smoke_defaults  # a few dozen prompts, minutes on one GPU: smaller batches, before the block so the env still wins
fi

# ---- The paper's hyperparameters (../shared/DESIGN.md table; "release" = GAIR-NLP/LIMR scripts/train_math.8k.sh) ----
MODEL=${MODEL:-Qwen/Qwen2.5-Math-7B}                 # paper §3.1: policy and critic start from the base model (no SFT)
ADVANTAGE_ESTIMATOR=${ADVANTAGE_ESTIMATOR:-gae}      # paper §3.1: PPO with GAE; release --advantage_estimator gae
GAE_LAMBDA=${GAE_LAMBDA:-0.95}                       # paper §3.1; release --lambd 0.95
GAE_GAMMA=${GAE_GAMMA:-1.0}                          # paper §3.1; release default --gamma 1
KL_COEF=${KL_COEF:-0.01}                             # paper §3.1; release --init_kl_coef 0.01
EPS_CLIP=${EPS_CLIP:-0.2}                            # paper §3.1; release --eps_clip 0.2
VALUE_CLIP=${VALUE_CLIP:-0.2}                        # paper §3.1; release --value_clip 0.2
ACTOR_LR=${ACTOR_LR:-5e-7}                           # paper §3.1; release --actor_learning_rate 5e-7
CRITIC_LR=${CRITIC_LR:-9e-6}                         # paper §3.1; release --critic_learning_rate 9e-6
LR_WARMUP_STEPS=${LR_WARMUP_STEPS:-10}               # paper §3.1; release --lr_warmup_steps 10 (optimizer steps)
LR_SCHEDULER=${LR_SCHEDULER:-constant_with_warmup}   # release: a cosine over --num_episodes 10000, flat in any real run
ROLLOUT_BATCH_SIZE=${ROLLOUT_BATCH_SIZE:-1024}       # paper §3.1: prompts per PPO step; release --rollout_batch_size
N_SAMPLES_PER_PROMPT=${N_SAMPLES_PER_PROMPT:-8}      # paper §3.1; release --n_samples_per_prompt 8
ROLLOUT_MICRO_BATCH_SIZE=${ROLLOUT_MICRO_BATCH_SIZE:-auto}  # release 4; auto: the largest <= 4 that splits evenly (below)
TEMPERATURE=${TEMPERATURE:-1.2}                      # paper §3.1; release --temperature 1.2
TOP_P=${TOP_P:-1.0}                                  # release default --top_p 1.0
PROMPT_MAX_LEN=${PROMPT_MAX_LEN:-1024}               # paper §3.1; release --prompt_max_len 1024
GENERATE_MAX_LEN=${GENERATE_MAX_LEN:-3072}           # paper §3.1; release --generate_max_len 3072
TRAIN_BATCH_SIZE=${TRAIN_BATCH_SIZE:-256}            # paper §3.1; release --train_batch_size 256
TRAIN_MICRO_BATCH_SIZE=${TRAIN_MICRO_BATCH_SIZE:-4}  # paper §3.1; release --micro_train_batch_size 4
PPO_EPOCHS=${PPO_EPOCHS:-1}                          # paper §3.1: 1 PPO epoch per rollout; release --max_epochs 1
TRAIN_STEPS=${TRAIN_STEPS:-189}                      # paper §2.2: 21 epochs of history = 21 x 9 steps here (README)
FULL_BATCHES=${FULL_BATCHES:-auto}                   # auto: every run but FULL trains on whole rollout batches (README)
ZERO_STAGE=${ZERO_STAGE:-3}                          # paper §3.1; release --zero_stage 3
PARAM_DTYPE=${PARAM_DTYPE:-bf16}                     # paper §3.1; release --bf16
ATTN_IMPLEMENTATION=${ATTN_IMPLEMENTATION:-flash_attention_2}  # release --flash_attn
# Always on, as in the paper (§3.1) and the release: sample packing (--ds.packing_samples), Adam offload
# (--ds.adam_offload), gradient checkpointing (--actor.gradient_checkpointing_enable, also the critic's) and
# reward normalisation (--reward.normalize_enable).
EVAL_STEPS=${EVAL_STEPS:-1}                          # release --eval_steps 1: the validation set after every step
EVAL_TEMPERATURE=${EVAL_TEMPERATURE:-0.7}            # release: its fork's --val_temperature default
EVAL_N_SAMPLES=${EVAL_N_SAMPLES:-1}                  # release: 1 per row (validation lists each AIME24 question 4 times)
SAVE_STEPS=${SAVE_STEPS:-1}                          # release --save_steps 1: an HF checkpoint after every step
SEED=${SEED:-42}                                     # release default --seed 42

# ---- Data contract (limr/dataset.py; data/README.md) ----
VALIDATION=${VALIDATION:-data/validation.jsonl}      # 256 rows labelled split "eval", made by python data/prepare.py
INPUT_KEY=context_messages                           # system + user messages, rendered with the model's chat template
LABEL_KEY=label                                      # '{"id","answer","split"}': what the reward server grades with

# ---- Reward server, Ray, checkpoints, logging ----
GRADER=${GRADER:-default}                # default | limr (the release's reward, bug for bug: the faithful LIM run)
REWARD_PORT=${REWARD_PORT:-5000}         # release: its reward server listened on 5000
REWARD_TOKEN=${REWARD_TOKEN:-}           # off by default: OpenRLHF 0.11.2's reward client sends no auth header
REWARD_WAIT_S=${REWARD_WAIT_S:-120}      # how long to wait for GET /health
RAY_PORT=${RAY_PORT:-6379}
RAY_WAIT_S=${RAY_WAIT_S:-600}            # how long the head waits for every node's GPUs (and a worker for the head)
NODE_RANK=${NODE_RANK:-${PET_NODE_RANK:-0}}  # 0 = head; the release read PET_NODE_RANK (torchrun's name)
MASTER_ADDR=${MASTER_ADDR:-}             # the head node's address: required on the other nodes
CKPT_BEST=${CKPT_BEST:-none}             # no extra best_global_step* copies: eval reads every global_step{N}_hf
WANDB_PROJECT=${WANDB_PROJECT:-limr}     # wandb logs only when WANDB_API_KEY is set (it is never put on a command line)

# ---- Layout: PRESET's GPUs per model group (apply_preset; scripts/README.md has the memory and time each needs) ----
GROUP_NODES=${GROUP_NODES:-1}  # nodes per model group (actor, critic, reference): one in every preset
apply_preset                   # NNODES, GPUS_PER_NODE, ACTOR_GPUS, CRITIC_GPUS, REF_GPUS, VLLM_*, COLOCATE_FLAGS

if [[ $BACKEND == verl ]]; then
    # shellcheck source-path=SCRIPTDIR source=lib/verl.sh
    source scripts/lib/verl.sh
    launch_verl  # the block mapped to verl's config, our reward function, rollout dumps: never returns
fi
[[ $BACKEND == openrlhf ]] || die "BACKEND must be openrlhf or verl, got '$BACKEND'"

# ---- The launch ----
check_settings              # types and ranges, this node's role, the prompt files: one error line, exit 2
check_machine               # GPUs, ray and the model are here (not under DRY_RUN=1)
derive_schedule             # steps per episode, episodes, LR warmup ratio, max length (as OpenRLHF 0.11 counts)
derive_endpoints            # the reward server's address and URL, wandb on or off
choose_rollout_micro_batch  # every step splits evenly over every model group's ranks, or the run is refused
check_train_batch           # DeepSpeed's train batch = micro batch x accumulation x ranks
print_plan
run_preflight               # scripts/preflight.sh on this node, every node: stop if any check failed
set_exit_trap               # on exit, stop the reward server and Ray if this script started them
if ((NODE_RANK > 0)); then
    join_head               # other nodes: join the head's Ray cluster and block until it stops
    exit 0
fi
write_full_batches          # the stage-2 runs: the prompt file of whole batches (limr/full_batches.py)
start_reward_server         # the head: the reward server, logging every rollout, answering GET /health ...
start_ray_head              # ... a Ray head, and every node's GPUs in it ...
check_wandb_on_every_node
# ... then the PPO driver in the foreground: Ctrl-C or a crash ends the whole run.
run python3 -m openrlhf.cli.train_ppo_ray \
    --actor.model_name_or_path "$MODEL" \
    --critic.model_name_or_path "$MODEL" \
    --reward.remote_url "$REWARD_URL" \
    --data.prompt_dataset "$(abs "$TRAIN_PROMPTS")" \
    --data.input_key "$INPUT_KEY" \
    --data.label_key "$LABEL_KEY" \
    --data.apply_chat_template \
    --eval.dataset "$(abs "$VALIDATION")" \
    --eval.steps "$EVAL_STEPS" \
    --eval.temperature "$EVAL_TEMPERATURE" \
    --eval.n_samples_per_prompt "$EVAL_N_SAMPLES" \
    --actor.num_nodes "$GROUP_NODES" \
    --actor.num_gpus_per_node "$ACTOR_GPUS" \
    --critic.num_nodes "$GROUP_NODES" \
    --critic.num_gpus_per_node "$CRITIC_GPUS" \
    --ref.num_nodes "$GROUP_NODES" \
    --ref.num_gpus_per_node "$REF_GPUS" \
    --vllm.num_engines "$VLLM_ENGINES" \
    --vllm.tensor_parallel_size "$VLLM_TP" \
    --vllm.gpu_memory_utilization "$VLLM_GPU_MEMORY" \
    "${COLOCATE_FLAGS[@]}" \
    --algo.advantage.estimator "$ADVANTAGE_ESTIMATOR" \
    --algo.advantage.lambd "$GAE_LAMBDA" \
    --algo.advantage.gamma "$GAE_GAMMA" \
    --algo.kl.init_coef "$KL_COEF" \
    --actor.eps_clip "$EPS_CLIP" \
    --critic.value_clip "$VALUE_CLIP" \
    --actor.adam.lr "$ACTOR_LR" \
    --critic.adam.lr "$CRITIC_LR" \
    --actor.lr_scheduler "$LR_SCHEDULER" \
    --critic.lr_scheduler "$LR_SCHEDULER" \
    --actor.lr_warmup_ratio "$LR_WARMUP_RATIO" \
    --critic.lr_warmup_ratio "$LR_WARMUP_RATIO" \
    --rollout.batch_size "$ROLLOUT_BATCH_SIZE" \
    --rollout.n_samples_per_prompt "$N_SAMPLES_PER_PROMPT" \
    --rollout.micro_batch_size "$ROLLOUT_MICRO_BATCH_SIZE" \
    --rollout.temperature "$TEMPERATURE" \
    --rollout.top_p "$TOP_P" \
    --rollout.max_new_tokens "$GENERATE_MAX_LEN" \
    --data.max_len "$MAX_LEN" \
    --train.batch_size "$TRAIN_BATCH_SIZE" \
    --train.micro_batch_size "$TRAIN_MICRO_BATCH_SIZE" \
    --train.max_epochs "$PPO_EPOCHS" \
    --train.num_episodes "$NUM_EPISODES" \
    --train.seed "$SEED" \
    --ds.zero_stage "$ZERO_STAGE" \
    --ds.param_dtype "$PARAM_DTYPE" \
    --ds.attn_implementation "$ATTN_IMPLEMENTATION" \
    --ds.packing_samples \
    --ds.adam_offload \
    --actor.gradient_checkpointing_enable \
    --reward.normalize_enable \
    --ckpt.path "$RUN_DIR/ckpt" \
    --ckpt.save_steps "$SAVE_STEPS" \
    --ckpt.save_hf \
    --ckpt.disable_ds \
    --ckpt.best_metric_key "$CKPT_BEST" \
    --ckpt.output_dir "$RUN_DIR/final_hf" \
    --logger.tensorboard_dir "$RUN_DIR/tensorboard" \
    --logger.wandb.key "$WANDB_KEY_FLAG" \
    --logger.wandb.project "$WANDB_PROJECT" \
    --logger.wandb.run_name "$RUN"
