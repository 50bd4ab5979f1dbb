#!/usr/bin/env bash
# The shared launcher of the paper's four PPO runs on stock OpenRLHF 0.11.2. It is sourced by
# train_math.8k.sh (FULL), train_limr.sh (LIMR), train_rand.sh (RAND) and train_linear.sh (LINEAR),
# which set only RUN (the output folder), PROMPTS (the prompt file) and PROMPTS_CMD (what makes it).
#
#   bash scripts/train_math.8k.sh                           # PRESET=paper: run on the head node (NODE_RANK 0) ...
#   NODE_RANK=1 MASTER_ADDR=node0 bash scripts/train_math.8k.sh   # ... and on the second node (node0 = head's hostname)
#   PRESET=node bash scripts/train_limr.sh                  # 1 node x 8 GPUs, everything colocated
#   PRESET=single bash scripts/train_limr.sh                # 1 x 80 GB GPU, Qwen2.5-Math-1.5B
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

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    echo "error: train_common.sh is sourced by the run scripts: bash scripts/train_math.8k.sh (or train_limr.sh," \
        "train_rand.sh, train_linear.sh)" >&2
    exit 2
fi
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."  # the repo root: relative paths are relative to it
ROOT=$PWD

PRESET=${PRESET:-paper}    # paper | node | single | smoke: where the models run (layouts below)
DRY_RUN=${DRY_RUN:-0}      # 1: print every command that would run, start nothing
OUT=${OUT:-outputs}        # the root of every artifact (gitignored): $OUT/$RUN/{ckpt,rollouts.jsonl,...}
MODEL_FROM_ENV=${MODEL:-}  # the single preset changes the model unless MODEL is set

# PRESET=smoke (scripts/smoke.sh: a few dozen prompts, minutes on one GPU) shrinks the run, not the method:
# smaller batches, shorter answers, two passes, an eval and a checkpoint every pass. Set before the paper's block
# so that the environment still overrides each of them.
if [[ ${PRESET:-paper} == smoke ]]; then
    : "${ROLLOUT_BATCH_SIZE:=16}" "${TRAIN_BATCH_SIZE:=64}" "${GENERATE_MAX_LEN:=1024}" "${TRAIN_STEPS:=6}"
    : "${LR_WARMUP_STEPS:=2}" "${EVAL_STEPS:=3}" "${SAVE_STEPS:=3}"
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

# ---- Layout presets (scripts/README.md has the memory and time each needs) ----
GROUP_NODES=${GROUP_NODES:-1}  # nodes per model group (actor, critic, reference): one in every preset
COLOCATE_FLAGS=()
case "$PRESET" in
    paper)  # 2 nodes x 8 GPUs, nothing shared: actor 4, critic 4, reference 4, vLLM 4 engines of TP 1 (paper §3.1)
        NNODES=${NNODES:-2}
        GPUS_PER_NODE=${GPUS_PER_NODE:-8}
        ACTOR_GPUS=${ACTOR_GPUS:-4}
        CRITIC_GPUS=${CRITIC_GPUS:-4}
        REF_GPUS=${REF_GPUS:-4}
        VLLM_ENGINES=${VLLM_ENGINES:-4}
        VLLM_TP=${VLLM_TP:-1}
        VLLM_GPU_MEMORY=${VLLM_GPU_MEMORY:-0.9}
        ;;
    node)  # 1 node x 8 GPUs: every model on every GPU; vLLM sleeps while DeepSpeed trains. --ds.enable_sleep moves
        # nothing with --ds.adam_offload (the weight shards stay) but trains critic, then actor (scripts/README.md)
        NNODES=${NNODES:-1}
        GPUS_PER_NODE=${GPUS_PER_NODE:-8}
        ACTOR_GPUS=${ACTOR_GPUS:-8}
        CRITIC_GPUS=${CRITIC_GPUS:-8}
        REF_GPUS=${REF_GPUS:-8}
        VLLM_ENGINES=${VLLM_ENGINES:-8}
        VLLM_TP=${VLLM_TP:-1}
        VLLM_GPU_MEMORY=${VLLM_GPU_MEMORY:-0.5}
        COLOCATE_FLAGS=(--train.colocate_all --vllm.enable_sleep --ds.enable_sleep)
        ;;
    single | smoke)  # 1 x 80 GB GPU and Qwen2.5-Math-1.5B (a departure from the paper's 7B), everything colocated
        MODEL=${MODEL_FROM_ENV:-Qwen/Qwen2.5-Math-1.5B}
        NNODES=${NNODES:-1}
        GPUS_PER_NODE=${GPUS_PER_NODE:-1}
        ACTOR_GPUS=${ACTOR_GPUS:-1}
        CRITIC_GPUS=${CRITIC_GPUS:-1}
        REF_GPUS=${REF_GPUS:-1}
        VLLM_ENGINES=${VLLM_ENGINES:-1}
        VLLM_TP=${VLLM_TP:-1}
        VLLM_GPU_MEMORY=${VLLM_GPU_MEMORY:-0.5}
        COLOCATE_FLAGS=(--train.colocate_all --vllm.enable_sleep --ds.enable_sleep)
        ;;
    *)
        echo "error: PRESET must be paper, node, single or smoke, got '$PRESET'" >&2
        exit 2
        ;;
esac

# ---- Helpers ----
die() {
    echo "error: $*" >&2
    exit 2
}

show() {  # print a command as it runs: "+ cmd", then one --flag (with its value) per line; the token is masked
    local text="+" arg quoted
    for arg in "$@"; do
        [[ $arg == --* && $text != "+" ]] && text+=$' \\\n   '
        printf -v quoted '%q' "$arg"
        text+=" $quoted"
    done
    # shellcheck disable=SC2016  # the literal text $REWARD_TOKEN replaces the secret
    [[ -n $REWARD_TOKEN ]] && text=${text//"$REWARD_TOKEN"/'$REWARD_TOKEN'}
    printf '%s\n' "$text"
}

run() {  # show a command; run it unless DRY_RUN=1
    show "$@"
    [[ $DRY_RUN == 1 ]] || "$@"
}

need() {  # need REGEX WHAT VAR...: each variable must match
    local re=$1 what=$2 v
    shift 2
    for v in "$@"; do
        [[ ${!v} =~ $re ]] || die "$v must be $what, got '${!v}'"
    done
}

count_rows() {  # the non-blank lines of a JSONL file
    grep -c '[^[:space:]]' "$1" || true
}

check_prompt_file() {  # FILE HOW: an OpenRLHF prompt dataset (limr/dataset.py rows) or one clear error
    local file=$1 how=$2 first
    [[ -f $file ]] || die "$file not found: make it with: $how"
    first=$(grep -m1 '[^[:space:]]' "$file" || true)
    [[ $first == *'"context_messages"'* && $first == *'"label"'* ]] \
        || die "$file is not an OpenRLHF prompt dataset (JSONL rows with context_messages and label): make it with: $how"
}

abs() {  # paths go to Ray actors whose working directory is not the repo
    if [[ $1 == /* ]]; then echo "$1"; else echo "$ROOT/$1"; fi
}

# ---- Checks ----
[[ $ROLLOUT_MICRO_BATCH_SIZE == auto ]] || need '^[1-9][0-9]*$' "auto or a whole number >= 1" ROLLOUT_MICRO_BATCH_SIZE
need '^[0-9]+$' "a whole number" ROLLOUT_BATCH_SIZE N_SAMPLES_PER_PROMPT PROMPT_MAX_LEN \
    GENERATE_MAX_LEN TRAIN_BATCH_SIZE TRAIN_MICRO_BATCH_SIZE PPO_EPOCHS TRAIN_STEPS LR_WARMUP_STEPS ZERO_STAGE \
    EVAL_STEPS EVAL_N_SAMPLES SAVE_STEPS SEED REWARD_PORT REWARD_WAIT_S RAY_PORT RAY_WAIT_S NODE_RANK NNODES \
    GROUP_NODES GPUS_PER_NODE ACTOR_GPUS CRITIC_GPUS REF_GPUS VLLM_ENGINES VLLM_TP
need '^([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$' "a number" GAE_LAMBDA GAE_GAMMA KL_COEF EPS_CLIP VALUE_CLIP \
    ACTOR_LR CRITIC_LR TEMPERATURE TOP_P EVAL_TEMPERATURE VLLM_GPU_MEMORY
need '^[1-9]' "at least 1" ROLLOUT_BATCH_SIZE N_SAMPLES_PER_PROMPT TRAIN_BATCH_SIZE \
    TRAIN_MICRO_BATCH_SIZE PPO_EPOCHS TRAIN_STEPS EVAL_STEPS EVAL_N_SAMPLES SAVE_STEPS NNODES GROUP_NODES GPUS_PER_NODE \
    ACTOR_GPUS CRITIC_GPUS REF_GPUS VLLM_ENGINES VLLM_TP
[[ $GRADER == default || $GRADER == limr ]] || die "GRADER must be default or limr, got '$GRADER'"
# The token travels unencoded in the URL OpenRLHF posts to: a ',' splits it into two servers, + & # % change it.
[[ -z $REWARD_TOKEN || $REWARD_TOKEN =~ ^[A-Za-z0-9_-]+$ ]] \
    || die "REWARD_TOKEN may hold only letters, digits, _ and - (it goes into the reward URL as it is)"
((NODE_RANK < NNODES)) || die "NODE_RANK $NODE_RANK is not below the $NNODES node(s) of PRESET=$PRESET"
if [[ -z $MASTER_ADDR ]]; then
    ((NODE_RANK == 0)) || die "MASTER_ADDR (the head node's address) is not set on node $NODE_RANK"
    MASTER_ADDR=$HOSTNAME  # bash sets it: this node's name
fi
# shellcheck disable=SC2153  # PROMPTS is set by the run script that sources this file
check_prompt_file "$PROMPTS" "$PROMPTS_CMD"
check_prompt_file "$VALIDATION" "python data/prepare.py"

if [[ $DRY_RUN == 1 ]]; then
    echo "# DRY_RUN=1: the commands of PRESET=$PRESET on node $NODE_RANK; nothing is started, GPU/ray/model not checked"
else
    command -v nvidia-smi >/dev/null || die "no NVIDIA GPU here (nvidia-smi not found): PRESET=$PRESET needs" \
        "$GPUS_PER_NODE GPU(s) on each of $NNODES node(s); DRY_RUN=1 prints the commands without one"
    GPUS_HERE=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true)
    ((GPUS_HERE >= GPUS_PER_NODE)) || die "PRESET=$PRESET needs $GPUS_PER_NODE GPU(s) per node, nvidia-smi lists $GPUS_HERE"
    command -v ray >/dev/null || die "ray not found: install the cluster stack on every node: pip install -r requirements.txt"
    HF_HUB_DIR=${HF_HUB_CACHE:-${HF_HOME:-$HOME/.cache/huggingface}/hub}
    if [[ ! -f $MODEL/config.json ]] && ! compgen -G "$HF_HUB_DIR/models--${MODEL//\//--}/snapshots/*/config.json" >/dev/null; then
        die "model $MODEL not found (no $MODEL/config.json, not in the Hugging Face cache $HF_HUB_DIR):" \
            "download it first (hf download $MODEL) or set MODEL to its local folder"
    fi
fi

# ---- Derived from the block above (README: how OpenRLHF 0.11 counts steps) ----
RUN_DIR=$(abs "$OUT/$RUN")
PROMPT_ROWS=$(count_rows "$PROMPTS")
SAMPLES_PER_STEP=$((ROLLOUT_BATCH_SIZE * N_SAMPLES_PER_PROMPT))  # what the reward server counts as one step
SAMPLES_PER_EPISODE=$((PROMPT_ROWS * N_SAMPLES_PER_PROMPT))  # the server restarts its step count at each pass
# OpenRLHF 0.11 keeps a pass's last, partial batch, so a pass over the prompts ("episode") takes ceil(rows/batch)
# steps; enough episodes are run for TRAIN_STEPS steps.
STEPS_PER_EPISODE=$(((PROMPT_ROWS + ROLLOUT_BATCH_SIZE - 1) / ROLLOUT_BATCH_SIZE))
NUM_EPISODES=$(((TRAIN_STEPS + STEPS_PER_EPISODE - 1) / STEPS_PER_EPISODE))
# Its LR warmup is a ratio of the scheduler's steps (ppo_trainer.prepare_datasets), which it rounds up:
# (warmup - 0.5) / steps gives exactly LR_WARMUP_STEPS warmup steps whatever the float rounding.
# shellcheck disable=SC2017  # integer division first, exactly as OpenRLHF computes it
SCHEDULER_STEPS=$((PROMPT_ROWS * N_SAMPLES_PER_PROMPT / TRAIN_BATCH_SIZE * NUM_EPISODES * PPO_EPOCHS))
((SCHEDULER_STEPS > 0)) || die "$PROMPTS has $PROMPT_ROWS rows: fewer samples than one train batch ($TRAIN_BATCH_SIZE)"
LR_WARMUP_RATIO=$(awk -v w="$LR_WARMUP_STEPS" -v n="$SCHEDULER_STEPS" 'BEGIN { printf "%.8g", (w > 0 ? (w - 0.5) / n : 0) }')
MAX_LEN=$((PROMPT_MAX_LEN + GENERATE_MAX_LEN))  # 0.11 has no prompt limit: prompts are cut to max_len - max_new_tokens
if ((NNODES > 1)); then
    REWARD_BIND=0.0.0.0  # the vLLM engines on every node call it
    REWARD_HOST=$MASTER_ADDR
else
    REWARD_BIND=127.0.0.1
    REWARD_HOST=127.0.0.1
fi
# OpenRLHF 0.11.2 posts to this URL with no headers, so a token can only travel in its query string.
REWARD_URL="http://$REWARD_HOST:$REWARD_PORT/get_reward${REWARD_TOKEN:+?token=$REWARD_TOKEN}"
TOKEN_ARGS=()
[[ -z $REWARD_TOKEN ]] || TOKEN_ARGS=(--token "$REWARD_TOKEN")
WANDB_KEY_FLAG=${WANDB_API_KEY:+env}  # non-empty turns wandb on; wandb itself reads WANDB_API_KEY from the env

# ---- Every step splits evenly over every model group's ranks, or the run is refused before it starts ----
# OpenRLHF 0.11.2 cuts a step's samples into micro-batches of --rollout.micro_batch_size
# (trainer/ppo_utils/experience_maker.py, split_rollout_samples) and deals them to a model group's ranks in chunks
# of ceil(micro-batches / ranks) (trainer/ray/launcher.py, async_run_method_batch). Under ZeRO-3 every forward is a
# collective, so a rank with fewer micro-batches leaves the others waiting until NCCL's 60-minute timeout. A step
# of S samples is even when S divides by micro batch x ranks: equal micro-batches and equal samples on every rank
# (so equal train micro-batches too). A pass has at most two step sizes: full batches and its last, partial one.
STEP_SIZES=()  # prompts per step, each distinct size of a pass once
((PROMPT_ROWS >= ROLLOUT_BATCH_SIZE)) && STEP_SIZES+=("$ROLLOUT_BATCH_SIZE")
((PROMPT_ROWS % ROLLOUT_BATCH_SIZE)) && STEP_SIZES+=("$((PROMPT_ROWS % ROLLOUT_BATCH_SIZE))")
MODEL_GROUPS=("actor $((GROUP_NODES * ACTOR_GPUS))" "critic $((GROUP_NODES * CRITIC_GPUS))"
    "reference $((GROUP_NODES * REF_GPUS))")

uneven_split() {  # MICRO: say how the first uneven (step, group) splits with this micro batch; nothing if all are even
    local micro=$1 prompts samples entry group ranks batches chunk i share shares
    for prompts in "${STEP_SIZES[@]}"; do
        samples=$((prompts * N_SAMPLES_PER_PROMPT))
        for entry in "${MODEL_GROUPS[@]}"; do
            read -r group ranks <<<"$entry"
            ((samples % (micro * ranks))) || continue
            batches=$(((samples + micro - 1) / micro))
            chunk=$(((batches + ranks - 1) / ranks))
            shares=
            for ((i = 0; i < ranks; i++)); do  # samples per rank, as async_run_method_batch slices them
                share=$((samples - i * chunk * micro))
                ((share > chunk * micro)) && share=$((chunk * micro))
                ((share < 0)) && share=0
                shares+=${shares:+/}$share
            done
            echo "a step of $prompts prompts x $N_SAMPLES_PER_PROMPT = $samples samples is $batches micro-batches of" \
                "$micro, dealt $chunk per rank: the $group's $ranks ranks get $shares samples"
            return
        done
    done
}

EVEN_MICRO=  # the largest micro batch <= 4 (the release's) that splits every step evenly
for micro in 4 3 2 1; do
    [[ -z $(uneven_split "$micro") ]] && EVEN_MICRO=$micro && break
done
if [[ -z $EVEN_MICRO ]]; then
    die "no rollout micro batch splits evenly: $(uneven_split 1); with $PROMPT_ROWS prompts, give every model group" \
        "a rank count that divides each step's samples (ACTOR_GPUS, CRITIC_GPUS, REF_GPUS), or change ROLLOUT_BATCH_SIZE"
elif [[ $ROLLOUT_MICRO_BATCH_SIZE == auto ]]; then
    ROLLOUT_MICRO_BATCH_SIZE=$EVEN_MICRO
elif [[ -n $(uneven_split "$ROLLOUT_MICRO_BATCH_SIZE") ]]; then
    die "ROLLOUT_MICRO_BATCH_SIZE=$ROLLOUT_MICRO_BATCH_SIZE splits unevenly and would hang under ZeRO-3:" \
        "$(uneven_split "$ROLLOUT_MICRO_BATCH_SIZE"); use ROLLOUT_MICRO_BATCH_SIZE=$EVEN_MICRO (or auto)"
fi
# DeepSpeed needs train batch = micro batch x accumulation steps x ranks (runtime/config.py, _batch_assertion).
for entry in "${MODEL_GROUPS[@]:0:2}"; do  # actor and critic train; the reference only runs forwards
    read -r group ranks <<<"$entry"
    ((TRAIN_BATCH_SIZE % (TRAIN_MICRO_BATCH_SIZE * ranks) == 0)) || die "TRAIN_BATCH_SIZE=$TRAIN_BATCH_SIZE is not" \
        "a multiple of TRAIN_MICRO_BATCH_SIZE=$TRAIN_MICRO_BATCH_SIZE x the $group's $ranks ranks: DeepSpeed refuses it"
done

echo "# $RUN: $PROMPT_ROWS prompts = $STEPS_PER_EPISODE steps per episode, $NUM_EPISODES episodes," \
    "$((STEPS_PER_EPISODE * NUM_EPISODES)) steps; model $MODEL; PRESET=$PRESET ($NNODES x $GPUS_PER_NODE GPUs)"
echo "# even split: rollout micro batch $ROLLOUT_MICRO_BATCH_SIZE; every step's samples divide by it x the ranks of" \
    "each model group (${MODEL_GROUPS[*]})"
if ((PROMPT_ROWS % ROLLOUT_BATCH_SIZE)); then
    PARTIAL_SAMPLES=$((PROMPT_ROWS % ROLLOUT_BATCH_SIZE * N_SAMPLES_PER_PROMPT))
    echo "# note: each episode ends with a step of $((PROMPT_ROWS % ROLLOUT_BATCH_SIZE)) prompts (OpenRLHF 0.11" \
        "keeps the partial batch; the paper's fork dropped it)"
    ACTOR_RANKS=$((GROUP_NODES * ACTOR_GPUS))
    PARTIAL_MICRO=$((PARTIAL_SAMPLES / ACTOR_RANKS / TRAIN_MICRO_BATCH_SIZE))  # train micro-batches per actor rank
    ACCUMULATION=$((TRAIN_BATCH_SIZE / TRAIN_MICRO_BATCH_SIZE / ACTOR_RANKS))
    if ((PARTIAL_MICRO % ACCUMULATION)); then
        echo "# note: on it each actor rank trains $PARTIAL_MICRO micro-batches = $((PARTIAL_MICRO / ACCUMULATION)) x" \
            "$ACCUMULATION + $((PARTIAL_MICRO % ACCUMULATION)); DeepSpeed counts micro-steps across steps, so those last" \
            "$((PARTIAL_MICRO % ACCUMULATION)) join the next step's first optimizer step (scripts/README.md)"
    fi
fi
echo "# LIM after this run: python lim_selection.py --train_samples_path $RUN_DIR/rollouts.jsonl" \
    "--max_epochs $NUM_EPISODES ...  (its lines say their epoch: $STEPS_PER_EPISODE steps each)"

STARTED_RAY=0
REWARD_PID=
cleanup() {  # the EXIT trap: stop what this script started (DRY_RUN=1: say what it would stop)
    local rc=$?
    if [[ -n $REWARD_PID ]]; then
        if [[ $DRY_RUN == 1 ]]; then
            # shellcheck disable=SC2016  # printed, not run
            echo '+ kill "$REWARD_PID"  # on exit: stop the reward server'
        else
            kill "$REWARD_PID" 2>/dev/null || true
            wait "$REWARD_PID" 2>/dev/null || true
        fi
    fi
    if ((STARTED_RAY)); then
        if [[ $DRY_RUN == 1 ]]; then
            echo "+ ray stop  # on exit"
        else
            ray stop >/dev/null 2>&1 || true
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- Other nodes: join the head's Ray cluster and block until it stops ----
if ((NODE_RANK > 0)); then
    echo "+ wait until $MASTER_ADDR:$RAY_PORT accepts connections (at most $RAY_WAIT_S s)"
    if [[ $DRY_RUN != 1 ]]; then
        for ((waited = 0; ; waited += 5)); do
            (: >"/dev/tcp/$MASTER_ADDR/$RAY_PORT") 2>/dev/null && break
            ((waited < RAY_WAIT_S)) || die "no Ray head at $MASTER_ADDR:$RAY_PORT after $RAY_WAIT_S s: start node 0 first"
            sleep 5
        done
    fi
    STARTED_RAY=1
    run ray start --address="$MASTER_ADDR:$RAY_PORT" --num-gpus="$GPUS_PER_NODE" --disable-usage-stats --block
    exit 0
fi

# ---- Head node: reward server, Ray head, then the PPO driver ----
[[ $DRY_RUN == 1 || ! -s $RUN_DIR/rollouts.jsonl ]] \
    || die "$RUN_DIR/rollouts.jsonl exists from an earlier run: move it away or set OUT to a new folder"
run mkdir -p "$RUN_DIR"

REWARD_LOG=$RUN_DIR/reward_server.log
REWARD_CMD=(python3 train/reward_server.py
    --host "$REWARD_BIND"
    --port "$REWARD_PORT"
    --rollout_log "$RUN_DIR/rollouts.jsonl"
    --samples_per_step "$SAMPLES_PER_STEP"
    --samples_per_epoch "$SAMPLES_PER_EPISODE"
    --eval_log "$RUN_DIR/rollouts.eval.jsonl"
    --grader "$GRADER"
    "${TOKEN_ARGS[@]}")
printf '%s >%q 2>&1 &\n' "$(show "${REWARD_CMD[@]}")" "$REWARD_LOG"
if [[ $DRY_RUN == 1 ]]; then
    REWARD_PID=dry-run
else
    "${REWARD_CMD[@]}" >"$REWARD_LOG" 2>&1 &
    REWARD_PID=$!
fi
HEALTH_URL="http://127.0.0.1:$REWARD_PORT/health"
echo "+ wait until GET $HEALTH_URL answers 200 (at most $REWARD_WAIT_S s)"
if [[ $DRY_RUN != 1 ]]; then
    for ((waited = 0; ; waited++)); do
        python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' "$HEALTH_URL" \
            2>/dev/null && break
        kill -0 "$REWARD_PID" 2>/dev/null || die "the reward server exited: see $REWARD_LOG"
        ((waited < REWARD_WAIT_S)) || die "the reward server did not answer $HEALTH_URL in $REWARD_WAIT_S s: see $REWARD_LOG"
        sleep 1
    done
fi

if [[ -z ${RAY_ADDRESS:-} ]]; then
    STARTED_RAY=1
    run ray start --head --port="$RAY_PORT" --num-gpus="$GPUS_PER_NODE" --disable-usage-stats
    RAY_ADDRESS=auto  # the cluster this node just started
fi
run export "RAY_ADDRESS=$RAY_ADDRESS"
RAY_GPUS_PY='import sys, ray; ray.init(address=sys.argv[1], logging_level="ERROR"); print(int(ray.cluster_resources().get("GPU", 0)))'
if ((NNODES > 1)); then
    echo "+ wait until Ray at $RAY_ADDRESS has $((NNODES * GPUS_PER_NODE)) GPUs (at most $RAY_WAIT_S s)"
    if [[ $DRY_RUN != 1 ]]; then
        for ((waited = 0; ; waited += 10)); do
            gpus=$(python3 -c "$RAY_GPUS_PY" "$RAY_ADDRESS" 2>/dev/null || echo 0)
            ((gpus >= NNODES * GPUS_PER_NODE)) && break
            ((waited < RAY_WAIT_S)) || die "Ray has $gpus of $((NNODES * GPUS_PER_NODE)) GPUs after $RAY_WAIT_S s:" \
                "start this script with NODE_RANK=1..$((NNODES - 1)) MASTER_ADDR=$MASTER_ADDR on the other nodes"
            sleep 10
        done
    fi
fi

# OpenRLHF's trainer may be placed on any node, and with --logger.wandb.key env it calls wandb.login(key="env") on a
# node whose Ray has no WANDB_API_KEY: every node's Ray must have it (a worker's comes from its `ray start`).
WANDB_NODES_PY='import os, sys, ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy as On
ray.init(address=sys.argv[1], logging_level="ERROR")
has_key = ray.remote(num_cpus=0)(lambda: bool(os.environ.get("WANDB_API_KEY")))
nodes = [n for n in ray.nodes() if n["Alive"]]
found = ray.get([has_key.options(scheduling_strategy=On(n["NodeID"], soft=False)).remote() for n in nodes])
print(" ".join(n["NodeManagerAddress"] for n, ok in zip(nodes, found) if not ok))'
if ((NNODES > 1)) && [[ -n $WANDB_KEY_FLAG ]]; then
    echo "+ check that every node's Ray has WANDB_API_KEY (wandb logs from whichever node holds the trainer)"
    if [[ $DRY_RUN != 1 ]]; then
        missing=$(python3 -c "$WANDB_NODES_PY" "$RAY_ADDRESS") || die "could not ask Ray's nodes for WANDB_API_KEY"
        [[ -z $missing ]] || die "WANDB_API_KEY is set here but not in Ray on $missing: export it there before" \
            "starting this script (or unset it here to log to tensorboard only)"
    fi
fi

run python3 -m openrlhf.cli.train_ppo_ray \
    --actor.model_name_or_path "$MODEL" \
    --critic.model_name_or_path "$MODEL" \
    --reward.remote_url "$REWARD_URL" \
    --data.prompt_dataset "$(abs "$PROMPTS")" \
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
