#!/usr/bin/env bash
# The mechanics of scripts/train_common.sh, which sources this file: functions only, called by its last section in
# this order. They read the settings of train_common.sh's block and set what they derive as globals, so every
# setting stays in that block and this file can be skipped unless you change how a launch works.
#   presets       smoke_defaults, apply_preset
#   checks        check_settings (types, ranges, node role, prompt files), check_machine (GPUs, ray, the model)
#   arithmetic    derive_schedule, derive_endpoints, choose_rollout_micro_batch, check_train_batch, print_plan
#   processes     run_preflight, set_exit_trap, export_ray_env, join_head, write_full_batches, start_reward_server,
#                 start_ray_head, check_wandb_on_every_node
# What is copied from OpenRLHF 0.11.2 (or DeepSpeed) names its source; tests/test_train_scripts.py and
# tests/test_even_split.py check each copy against the installed OpenRLHF's own code.
# shellcheck disable=SC2034,SC2153,SC2154  # the settings are globals: assigned in train_common.sh, or here and read there

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

announce() {  # print "+ TEXT" for a step that is not one command; false under DRY_RUN=1, so: announce ... || return 0
    echo "+ $*"
    [[ $DRY_RUN != 1 ]]
}

poll() {  # poll EVERY_S LIMIT_S CHECK: run CHECK every EVERY_S seconds until it succeeds; false once LIMIT_S have passed
    local every=$1 limit=$2 check=$3 waited
    for ((waited = 0; ; waited += every)); do
        "$check" && return 0
        ((waited < limit)) || return 1
        sleep "$every"
    done
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

# ---- Presets ----
smoke_defaults() {  # PRESET=smoke (scripts/smoke.sh) shrinks the run, not the method: smaller batches, shorter answers,
    # two passes, an eval and a checkpoint every pass. Called before the paper's block, so the environment still wins.
    : "${ROLLOUT_BATCH_SIZE:=16}" "${TRAIN_BATCH_SIZE:=64}" "${GENERATE_MAX_LEN:=1024}" "${TRAIN_STEPS:=6}"
    : "${LR_WARMUP_STEPS:=2}" "${EVAL_STEPS:=3}" "${SAVE_STEPS:=3}"
}

apply_preset() {  # where the models run: NNODES, GPUS_PER_NODE, the GPUs of each model group, vLLM, colocation
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
            die "PRESET must be paper, node, single or smoke, got '$PRESET'"
            ;;
    esac
}

# ---- Checks ----
check_settings() {  # every setting's type and range, this node's role, the two prompt files
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
    [[ $FULL_BATCHES =~ ^(auto|0|1)$ ]] || die "FULL_BATCHES must be auto, 0 or 1, got '$FULL_BATCHES'"
    # The token travels unencoded in the URL OpenRLHF posts to: a ',' splits it into two servers, + & # % change it.
    [[ -z $REWARD_TOKEN || $REWARD_TOKEN =~ ^[A-Za-z0-9_-]+$ ]] \
        || die "REWARD_TOKEN may hold only letters, digits, _ and - (it goes into the reward URL as it is)"
    ((NODE_RANK < NNODES)) || die "NODE_RANK $NODE_RANK is not below the $NNODES node(s) of PRESET=$PRESET"
    if [[ -z $MASTER_ADDR ]]; then
        ((NODE_RANK == 0)) || die "MASTER_ADDR (the head node's address) is not set on node $NODE_RANK"
        MASTER_ADDR=$HOSTNAME  # bash sets it: this node's name
    fi
    check_prompt_file "$PROMPTS" "$PROMPTS_CMD"
    check_prompt_file "$VALIDATION" "python data/prepare.py"
}

check_machine() {  # the GPUs, ray and the model are here (DRY_RUN=1: say that they are not checked)
    if [[ $DRY_RUN == 1 ]]; then
        echo "# DRY_RUN=1: the commands of PRESET=$PRESET on node $NODE_RANK; nothing is started, GPU/ray/model not checked"
        return
    fi
    local gpus_here hub
    command -v nvidia-smi >/dev/null || die "no NVIDIA GPU here (nvidia-smi not found): PRESET=$PRESET needs" \
        "$GPUS_PER_NODE GPU(s) on each of $NNODES node(s); DRY_RUN=1 prints the commands without one"
    gpus_here=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true)
    ((gpus_here >= GPUS_PER_NODE)) || die "PRESET=$PRESET needs $GPUS_PER_NODE GPU(s) per node, nvidia-smi lists $gpus_here"
    command -v ray >/dev/null || die "ray not found: install the cluster stack on every node: pip install -r requirements.txt"
    hub=${HF_HUB_CACHE:-${HF_HOME:-$HOME/.cache/huggingface}/hub}
    if [[ ! -f $MODEL/config.json ]] && ! compgen -G "$hub/models--${MODEL//\//--}/snapshots/*/config.json" >/dev/null; then
        die "model $MODEL not found (no $MODEL/config.json, not in the Hugging Face cache $hub):" \
            "download it first (hf download $MODEL) or set MODEL to its local folder"
    fi
}

# ---- Arithmetic (README: how OpenRLHF 0.11 counts steps) ----
derive_schedule() {  # the run's steps, episodes, LR warmup and lengths, from the block's settings
    RUN_DIR=$(abs "$OUT/$RUN")
    SUBSET_ROWS=$(count_rows "$PROMPTS")
    # FULL's passes are LIM's epochs; the stage-2 runs need none, so they train on whole batches only: TRAIN_STEPS x
    # ROLLOUT_BATCH_SIZE rows of successive seeded shuffles of their prompts (limr/full_batches.py), in one episode.
    [[ $FULL_BATCHES != auto ]] || { [[ $RUN == math8k ]] && FULL_BATCHES=0 || FULL_BATCHES=1; }
    if ((FULL_BATCHES)); then
        TRAIN_PROMPTS=$RUN_DIR/prompts.full_batches.jsonl
        PROMPT_ROWS=$((TRAIN_STEPS * ROLLOUT_BATCH_SIZE))
    else
        TRAIN_PROMPTS=$PROMPTS
        PROMPT_ROWS=$SUBSET_ROWS
    fi
    SAMPLES_PER_STEP=$((ROLLOUT_BATCH_SIZE * N_SAMPLES_PER_PROMPT))  # what the reward server counts as one step
    SAMPLES_PER_EPISODE=$((PROMPT_ROWS * N_SAMPLES_PER_PROMPT))  # the server restarts its step count at each pass
    # OpenRLHF 0.11 keeps a pass's last, partial batch (trainer/ppo_utils/samples_generator.py, SamplesGenerator), so
    # a pass over the prompts ("episode") takes ceil(rows/batch) steps; enough episodes are run for TRAIN_STEPS steps.
    STEPS_PER_EPISODE=$(((PROMPT_ROWS + ROLLOUT_BATCH_SIZE - 1) / ROLLOUT_BATCH_SIZE))
    NUM_EPISODES=$(((TRAIN_STEPS + STEPS_PER_EPISODE - 1) / STEPS_PER_EPISODE))
    # Its LR warmup is a ratio of the scheduler's steps (trainer/ppo_trainer.py, prepare_datasets: max_steps), which
    # it rounds up (utils/deepspeed/deepspeed.py, _ds_init_train_model: ceil(max_steps x ratio)):
    # (warmup - 0.5) / steps gives exactly LR_WARMUP_STEPS warmup steps whatever the float rounding.
    # shellcheck disable=SC2017  # integer division first, exactly as OpenRLHF computes it
    SCHEDULER_STEPS=$((PROMPT_ROWS * N_SAMPLES_PER_PROMPT / TRAIN_BATCH_SIZE * NUM_EPISODES * PPO_EPOCHS))
    ((SCHEDULER_STEPS > 0)) || die "$PROMPTS has $PROMPT_ROWS rows: fewer samples than one train batch ($TRAIN_BATCH_SIZE)"
    LR_WARMUP_RATIO=$(awk -v w="$LR_WARMUP_STEPS" -v n="$SCHEDULER_STEPS" 'BEGIN { printf "%.8g", (w > 0 ? (w - 0.5) / n : 0) }')
    MAX_LEN=$((PROMPT_MAX_LEN + GENERATE_MAX_LEN))  # 0.11 has no prompt limit: prompts are cut to max_len - max_new_tokens
}

derive_endpoints() {  # where the reward server listens and the URL OpenRLHF posts to; wandb on or off
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
}

# Every step splits evenly over every model group's ranks, or the run is refused before it starts.
# OpenRLHF 0.11.2 cuts a step's samples into micro-batches of --rollout.micro_batch_size
# (trainer/ppo_utils/experience_maker.py, split_rollout_samples) and deals them to a model group's ranks in chunks
# of ceil(micro-batches / ranks) (trainer/ray/launcher.py, async_run_method_batch). Under ZeRO-3 every forward is a
# collective, so a rank with fewer micro-batches leaves the others waiting until NCCL's 60-minute timeout. A step
# of S samples is even when S divides by micro batch x ranks: equal micro-batches and equal samples on every rank
# (so equal train micro-batches too). A pass has at most two step sizes: full batches and its last, partial one.
uneven_split() {  # MICRO: say how the first uneven (step, group) splits with this micro batch; nothing if all are even
    local micro=$1 step_sizes=() prompts samples entry group ranks batches chunk i share shares
    ((PROMPT_ROWS >= ROLLOUT_BATCH_SIZE)) && step_sizes+=("$ROLLOUT_BATCH_SIZE")
    ((PROMPT_ROWS % ROLLOUT_BATCH_SIZE)) && step_sizes+=("$((PROMPT_ROWS % ROLLOUT_BATCH_SIZE))")
    for prompts in "${step_sizes[@]}"; do
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

choose_rollout_micro_batch() {  # auto: the largest micro batch <= 4 (the release's) that splits every step evenly
    local micro even=
    MODEL_GROUPS=("actor $((GROUP_NODES * ACTOR_GPUS))" "critic $((GROUP_NODES * CRITIC_GPUS))"
        "reference $((GROUP_NODES * REF_GPUS))")
    for micro in 4 3 2 1; do
        [[ -z $(uneven_split "$micro") ]] && even=$micro && break
    done
    if [[ -z $even ]]; then
        die "no rollout micro batch splits evenly: $(uneven_split 1); with $PROMPT_ROWS prompts, give every model group" \
            "a rank count that divides each step's samples (ACTOR_GPUS, CRITIC_GPUS, REF_GPUS), or change ROLLOUT_BATCH_SIZE"
    elif [[ $ROLLOUT_MICRO_BATCH_SIZE == auto ]]; then
        ROLLOUT_MICRO_BATCH_SIZE=$even
    elif [[ -n $(uneven_split "$ROLLOUT_MICRO_BATCH_SIZE") ]]; then
        die "ROLLOUT_MICRO_BATCH_SIZE=$ROLLOUT_MICRO_BATCH_SIZE splits unevenly and would hang under ZeRO-3:" \
            "$(uneven_split "$ROLLOUT_MICRO_BATCH_SIZE"); use ROLLOUT_MICRO_BATCH_SIZE=$even (or auto)"
    fi
}

check_train_batch() {  # DeepSpeed needs train batch = micro batch x accumulation steps x ranks (runtime/config.py,
    # _batch_assertion). Only the actor and the critic train; the reference only runs forwards.
    local entry group ranks
    for entry in "${MODEL_GROUPS[@]:0:2}"; do
        read -r group ranks <<<"$entry"
        ((TRAIN_BATCH_SIZE % (TRAIN_MICRO_BATCH_SIZE * ranks) == 0)) || die "TRAIN_BATCH_SIZE=$TRAIN_BATCH_SIZE is not" \
            "a multiple of TRAIN_MICRO_BATCH_SIZE=$TRAIN_MICRO_BATCH_SIZE x the $group's $ranks ranks: DeepSpeed refuses it"
    done
}

print_plan() {  # the run in numbers, the partial step's notes and the LIM command for after the run
    local partial=$((PROMPT_ROWS % ROLLOUT_BATCH_SIZE)) actor_ranks partial_micro accumulation
    echo "# $RUN: $PROMPT_ROWS prompts = $STEPS_PER_EPISODE steps per episode, $NUM_EPISODES episodes," \
        "$((STEPS_PER_EPISODE * NUM_EPISODES)) steps; model $MODEL; PRESET=$PRESET ($NNODES x $GPUS_PER_NODE GPUs)"
    if ((FULL_BATCHES)); then
        echo "# full batches: every step $ROLLOUT_BATCH_SIZE prompts; $TRAIN_PROMPTS holds $PROMPT_ROWS rows, successive" \
            "seeded shuffles (seed $SEED) of the $SUBSET_ROWS prompts of $PROMPTS"
    fi
    echo "# even split: rollout micro batch $ROLLOUT_MICRO_BATCH_SIZE; every step's samples divide by it x the ranks of" \
        "each model group (${MODEL_GROUPS[*]})"
    if ((partial)); then
        echo "# note: each episode ends with a step of $partial prompts (OpenRLHF 0.11" \
            "keeps the partial batch; the paper's fork dropped it)"
        actor_ranks=$((GROUP_NODES * ACTOR_GPUS))
        # train micro-batches per actor rank on it (trainer/ray/ppo_actor.py, ppo_train: a DataLoader, drop_last)
        partial_micro=$((partial * N_SAMPLES_PER_PROMPT / actor_ranks / TRAIN_MICRO_BATCH_SIZE))
        accumulation=$((TRAIN_BATCH_SIZE / TRAIN_MICRO_BATCH_SIZE / actor_ranks))
        if ((partial_micro % accumulation)); then
            echo "# note: on it each actor rank trains $partial_micro micro-batches = $((partial_micro / accumulation)) x" \
                "$accumulation + $((partial_micro % accumulation)); DeepSpeed counts micro-steps across steps, so those last" \
                "$((partial_micro % accumulation)) join the next step's first optimizer step (scripts/README.md)"
        fi
    fi
    ((FULL_BATCHES)) && return  # no passes to score: LIM reads FULL's log
    echo "# LIM after this run: python lim_selection.py --train_samples_path $RUN_DIR/rollouts.jsonl" \
        "--max_epochs $NUM_EPISODES ...  (its lines say their epoch: $STEPS_PER_EPISODE steps each)"
}

# ---- Processes ----
run_preflight() {  # scripts/preflight.sh on this node first (SKIP_PREFLIGHT=1: you ran it yourself)
    if [[ ${SKIP_PREFLIGHT:-0} == 1 ]]; then
        echo "# SKIP_PREFLIGHT=1: scripts/preflight.sh not run on node $NODE_RANK"
        return
    fi
    run env PRESET="$PRESET" MODEL="$MODEL" NODE_RANK="$NODE_RANK" MASTER_ADDR="$MASTER_ADDR" REWARD_PORT="$REWARD_PORT" \
        RAY_PORT="$RAY_PORT" OUT="$OUT" TRAIN_STEPS="$TRAIN_STEPS" SAVE_STEPS="$SAVE_STEPS" PROMPTS="$PROMPTS" \
        VALIDATION="$VALIDATION" bash scripts/preflight.sh \
        || die "scripts/preflight.sh failed on node $NODE_RANK: fix each FAIL line above (SKIP_PREFLIGHT=1 skips it)"
}

export_ray_env() {  # what every Ray process on this node inherits from `ray start`: set before it, head and workers
    # --ds.adam_offload builds DeepSpeed's CPU Adam op on first use (ops/adam/cpu_adam.py; op_builder/builder.py,
    # assert_no_cuda_mismatch): a toolkit other than exactly torch's CUDA 13.0 raises CUDAMismatchException, since
    # DeepSpeed 0.19.6's table of tolerated minor mismatches (cuda_minor_mismatch_ok) stops at 12. Any 13.x builds it.
    run export DS_SKIP_CUDA_CHECK=1
}

write_full_batches() {  # the stage-2 runs' prompt file of whole batches (FULL_BATCHES=1), in the run folder
    ((FULL_BATCHES)) || return 0
    run mkdir -p "$RUN_DIR"
    run python3 -m limr.full_batches --prompts "$(abs "$PROMPTS")" --output "$TRAIN_PROMPTS" \
        --batch "$ROLLOUT_BATCH_SIZE" --steps "$TRAIN_STEPS" --seed "$SEED"
}

set_exit_trap() {  # on any exit, stop what this script started; Ctrl-C and TERM exit with their usual status
    STARTED_RAY=0
    REWARD_PID=
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

cleanup() {  # the EXIT trap: stop what this script started (DRY_RUN=1: say what it would stop)
    local rc=$?
    if [[ -n $REWARD_PID && $DRY_RUN == 1 ]]; then
        # shellcheck disable=SC2016  # printed, not run
        echo '+ kill "$REWARD_PID"  # on exit: stop the reward server'
    elif [[ -n $REWARD_PID ]]; then
        kill "$REWARD_PID" 2>/dev/null || true
        wait "$REWARD_PID" 2>/dev/null || true
    fi
    if ((STARTED_RAY)) && [[ $DRY_RUN == 1 ]]; then
        echo "+ ray stop  # on exit"
    elif ((STARTED_RAY)); then
        ray stop >/dev/null 2>&1 || true
    fi
    exit "$rc"
}

join_head() {  # other nodes: join the head's Ray cluster and block until it stops
    if announce "wait until $MASTER_ADDR:$RAY_PORT accepts connections (at most $RAY_WAIT_S s)"; then
        poll 5 "$RAY_WAIT_S" ray_head_listens \
            || die "no Ray head at $MASTER_ADDR:$RAY_PORT after $RAY_WAIT_S s: start node 0 first"
    fi
    STARTED_RAY=1
    export_ray_env
    run ray start --address="$MASTER_ADDR:$RAY_PORT" --num-gpus="$GPUS_PER_NODE" --disable-usage-stats --block
}

ray_head_listens() {
    (: >"/dev/tcp/$MASTER_ADDR/$RAY_PORT") 2>/dev/null
}

start_reward_server() {  # in the background, logging to the run folder; then wait until it answers GET /health
    [[ $DRY_RUN == 1 || ! -s $RUN_DIR/rollouts.jsonl ]] \
        || die "$RUN_DIR/rollouts.jsonl exists from an earlier run: move it away or set OUT to a new folder"
    run mkdir -p "$RUN_DIR"
    local cmd=(python3 train/reward_server.py
        --host "$REWARD_BIND"
        --port "$REWARD_PORT"
        --rollout_log "$RUN_DIR/rollouts.jsonl"
        --samples_per_step "$SAMPLES_PER_STEP"
        --samples_per_epoch "$SAMPLES_PER_EPISODE"
        --eval_log "$RUN_DIR/rollouts.eval.jsonl"
        --grader "$GRADER"
        "${TOKEN_ARGS[@]}")
    REWARD_LOG=$RUN_DIR/reward_server.log
    printf '%s >%q 2>&1 &\n' "$(show "${cmd[@]}")" "$REWARD_LOG"
    if [[ $DRY_RUN == 1 ]]; then
        REWARD_PID=dry-run
    else
        "${cmd[@]}" >"$REWARD_LOG" 2>&1 &
        REWARD_PID=$!
    fi
    HEALTH_URL="http://127.0.0.1:$REWARD_PORT/health"
    announce "wait until GET $HEALTH_URL answers 200 (at most $REWARD_WAIT_S s)" || return 0
    poll 1 "$REWARD_WAIT_S" reward_server_answers \
        || die "the reward server did not answer $HEALTH_URL in $REWARD_WAIT_S s: see $REWARD_LOG"
}

reward_server_answers() {  # true once it answers; an exited server ends the wait at once
    # no proxy: urllib honours http_proxy and does not bypass 127.0.0.1 by default (OpenRLHF's aiohttp client ignores it)
    python3 -c 'import sys, urllib.request as u; u.build_opener(u.ProxyHandler({})).open(sys.argv[1], timeout=2)' \
        "$HEALTH_URL" 2>/dev/null && return 0
    kill -0 "$REWARD_PID" 2>/dev/null || die "the reward server exited: see $REWARD_LOG"
    return 1
}

start_ray_head() {  # a Ray head (unless RAY_ADDRESS names a cluster), then wait for every node's GPUs
    if [[ -z ${RAY_ADDRESS:-} ]]; then
        STARTED_RAY=1
        export_ray_env
        run ray start --head --port="$RAY_PORT" --num-gpus="$GPUS_PER_NODE" --disable-usage-stats
        RAY_ADDRESS=auto  # the cluster this node just started
    else
        echo "# note: RAY_ADDRESS=$RAY_ADDRESS: a cluster this script did not start; each of its nodes needs" \
            "DS_SKIP_CUDA_CHECK=1 exported before its ray start (scripts/README.md)"
    fi
    run export "RAY_ADDRESS=$RAY_ADDRESS"
    ((NNODES > 1)) || return 0
    announce "wait until Ray at $RAY_ADDRESS has $((NNODES * GPUS_PER_NODE)) GPUs (at most $RAY_WAIT_S s)" || return 0
    poll 10 "$RAY_WAIT_S" ray_has_every_gpu || die "Ray has $RAY_GPUS of $((NNODES * GPUS_PER_NODE)) GPUs after" \
        "$RAY_WAIT_S s: start this script with NODE_RANK=1..$((NNODES - 1)) MASTER_ADDR=$MASTER_ADDR on the other nodes"
}

ray_has_every_gpu() {
    local py='import sys, ray; ray.init(address=sys.argv[1], logging_level="ERROR"); print(int(ray.cluster_resources().get("GPU", 0)))'
    RAY_GPUS=$(python3 -c "$py" "$RAY_ADDRESS" 2>/dev/null || echo 0)
    ((RAY_GPUS >= NNODES * GPUS_PER_NODE))
}

check_wandb_on_every_node() {
    # OpenRLHF's trainer may be placed on any node, and with --logger.wandb.key env it calls wandb.login(key="env") on
    # a node whose Ray has no WANDB_API_KEY: every node's Ray must have it (a worker's comes from its `ray start`).
    ((NNODES > 1)) && [[ -n $WANDB_KEY_FLAG ]] || return 0
    announce "check that every node's Ray has WANDB_API_KEY (wandb logs from whichever node holds the trainer)" \
        || return 0
    local missing py='import os, sys, ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy as On
ray.init(address=sys.argv[1], logging_level="ERROR")
has_key = ray.remote(num_cpus=0)(lambda: bool(os.environ.get("WANDB_API_KEY")))
nodes = [n for n in ray.nodes() if n["Alive"]]
found = ray.get([has_key.options(scheduling_strategy=On(n["NodeID"], soft=False)).remote() for n in nodes])
print(" ".join(n["NodeManagerAddress"] for n, ok in zip(nodes, found) if not ok))'
    missing=$(python3 -c "$py" "$RAY_ADDRESS") || die "could not ask Ray's nodes for WANDB_API_KEY"
    [[ -z $missing ]] || die "WANDB_API_KEY is set here but not in Ray on $missing: export it there before" \
        "starting this script (or unset it here to log to tensorboard only)"
}
