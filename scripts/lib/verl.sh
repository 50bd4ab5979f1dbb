#!/usr/bin/env bash
# BACKEND=verl: the paper's run on verl 0.9.1 instead of OpenRLHF 0.11.2. Sourced by scripts/train_common.sh after
# its hyperparameter block and presets; functions only (like lib/launch.sh, whose helpers it uses): launch_verl runs
# the launch and exits.
#   BACKEND=verl bash scripts/train_math.8k.sh              # FULL (likewise train_limr.sh, train_rand.sh, train_linear.sh)
#   BACKEND=verl DRY_RUN=1 bash scripts/train_math.8k.sh    # print the verl command; start nothing
# Every paper value comes from train_common.sh's block; this file is the mapping to verl's Hydra keys
# (verl/trainer/config/ppo_trainer.yaml) and the arithmetic where verl counts differently. Each value is passed
# even where verl's default agrees today. tests/test_verl_config.py composes verl's own config with these overrides.
# What has no counterpart, and what differs: README.md, "Backends". The verl stack: requirements-verl.txt.
# shellcheck disable=SC2034,SC2153,SC2154  # the settings are globals: assigned in train_common.sh, read here

verl_settings() {  # verl's own settings, each overridable from the environment (the paper's are train_common.sh's)
    VERL_TRAIN_STEPS_PAPER=168  # 21 passes over MATH-8k as verl counts them: 21 x floor(8,523 / 1,024) (drop_last)
    VERL_USE_V1=${VERL_USE_V1:-False}  # False: the legacy loop, whose rollout dumps carry our prompt_id; True: verl
    # 0.9's default loop, whose dumps do not (lim_selection.py then joins by the prompt text inside `input`)
    VERL_GPU_MEMORY=${VERL_GPU_MEMORY:-0.5}  # vLLM's share: verl's hybrid engine puts vLLM beside the trained models
    VERL_LOG_PROB_MICRO_BATCH=${VERL_LOG_PROB_MICRO_BATCH:-4}  # release --micro_rollout_batch_size 4 (per GPU)
}

verl_twin() {  # FILE SPLIT HOW: the parquet beside a prompt file (X.jsonl or X.json -> X.parquet), made if missing
    local file=$1 split=$2 how=$3 stem=${1%.*}
    VERL_TWIN=$stem.parquet
    [[ -f $VERL_TWIN && $VERL_TWIN -nt $stem.json ]] && return 0
    [[ -f $stem.json ]] || die "$stem.json not found (verl's parquet is made from it): make it with: $how"
    run python3 -m limr.verl_data "$stem.json" --split "$split"
}

check_verl_settings() {  # what verl needs beyond train_common.sh's checks
    [[ $VERL_USE_V1 == True || $VERL_USE_V1 == False ]] || die "VERL_USE_V1 must be True or False, got '$VERL_USE_V1'"
    need '^[1-9][0-9]*$' "a whole number >= 1" VERL_LOG_PROB_MICRO_BATCH
    need '^([0-9]+\.?[0-9]*|\.[0-9]+)$' "a number" VERL_GPU_MEMORY
    # verl counts the PPO mini-batch in prompts (x rollout.n): the paper's 256 sequences are 256 / 8 = 32 prompts
    ((TRAIN_BATCH_SIZE % N_SAMPLES_PER_PROMPT == 0)) \
        || die "TRAIN_BATCH_SIZE ($TRAIN_BATCH_SIZE) must be a multiple of N_SAMPLES_PER_PROMPT" \
            "($N_SAMPLES_PER_PROMPT): verl's mini-batch counts prompts"
}

derive_verl_schedule() {  # steps per pass, the run's steps, the LR warmup in verl's units
    RUN_DIR=$(abs "$OUT/$RUN")
    PROMPT_ROWS=$(count_rows "$PROMPTS")
    # verl's train loader drops each pass's partial batch (ray_trainer.py and v1/trainer_base.py: drop_last=True)
    STEPS_PER_EPOCH=$((PROMPT_ROWS / ROLLOUT_BATCH_SIZE))
    ((STEPS_PER_EPOCH > 0)) || die "$PROMPTS has $PROMPT_ROWS rows: fewer than one rollout batch ($ROLLOUT_BATCH_SIZE)"
    if [[ -z ${VERL_TRAIN_STEPS:-} ]]; then
        VERL_TRAIN_STEPS=$VERL_TRAIN_STEPS_PAPER
        [[ $PRESET != smoke ]] || VERL_TRAIN_STEPS=$TRAIN_STEPS
    fi
    need '^[1-9][0-9]*$' "a whole number >= 1" VERL_TRAIN_STEPS
    VERL_EPOCHS=$(((VERL_TRAIN_STEPS + STEPS_PER_EPOCH - 1) / STEPS_PER_EPOCH))
    VERL_MINI_BATCH=$((TRAIN_BATCH_SIZE / N_SAMPLES_PER_PROMPT))
    # OpenRLHF's warmup counts optimizer steps (10 x 256 samples); verl's scheduler ticks once per training step
    # (workers/engine_workers.py: update_lr_scheduler on a step's last mini-batch): whole steps of warmup, rounded
    # down, so the paper's 10 (a third of one step's 32 optimizer steps) are none.
    VERL_WARMUP_STEPS=$((LR_WARMUP_STEPS * TRAIN_BATCH_SIZE / (ROLLOUT_BATCH_SIZE * N_SAMPLES_PER_PROMPT)))
    [[ $ROLLOUT_MICRO_BATCH_SIZE == auto ]] || VERL_LOG_PROB_MICRO_BATCH=$ROLLOUT_MICRO_BATCH_SIZE
    VERL_LOGGER='["console","tensorboard"]'
    [[ -z ${WANDB_API_KEY:-} ]] || VERL_LOGGER='["console","tensorboard","wandb"]'
}

verl_overrides() {  # VERL_ARGS: the paper's block as verl 0.9.1's Hydra overrides
    local actor=actor_rollout_ref.actor rollout=actor_rollout_ref.rollout reward_file
    reward_file=$(abs train/verl_reward.py)
    VERL_ARGS=(
        # data: our parquet (limr/verl_data.py), shuffled with a seed (verl's data.seed defaults to null)
        "data.train_files=$(abs "$VERL_TRAIN_FILE")"
        "data.val_files=$(abs "$VERL_VAL_FILE")"
        data.prompt_key=prompt
        "data.train_batch_size=$ROLLOUT_BATCH_SIZE"
        "data.max_prompt_length=$PROMPT_MAX_LEN"
        "data.max_response_length=$GENERATE_MAX_LEN"
        data.shuffle=True
        "data.seed=$SEED"
        # the algorithm: PPO with GAE, the KL penalty in the reward (OpenRLHF's k1 estimator is verl's "kl")
        "algorithm.adv_estimator=$ADVANTAGE_ESTIMATOR"
        "algorithm.gamma=$GAE_GAMMA"
        "algorithm.lam=$GAE_LAMBDA"
        algorithm.use_kl_in_reward=True
        algorithm.kl_penalty=kl
        algorithm.kl_ctrl.type=fixed
        "algorithm.kl_ctrl.kl_coef=$KL_COEF"
        "$actor.use_kl_loss=False"
        # the models: policy and critic from the base model, gradient checkpointing, padding removed (packing)
        "actor_rollout_ref.model.path=$MODEL"
        "critic.model.path=$MODEL"
        actor_rollout_ref.model.enable_gradient_checkpointing=True
        critic.model.enable_gradient_checkpointing=True
        actor_rollout_ref.model.use_remove_padding=True
        critic.model.use_remove_padding=True
        # the actor: clip, learning rate, OpenRLHF's Adam (no weight decay, betas 0.9/0.95), warmup in verl's steps
        "$actor.strategy=fsdp"
        "$actor.clip_ratio=$EPS_CLIP"
        "$actor.clip_ratio_low=$EPS_CLIP"
        "$actor.clip_ratio_high=$EPS_CLIP"
        "$actor.entropy_coeff=0"
        "$actor.optim.lr=$ACTOR_LR"
        "$actor.optim.lr_scheduler_type=constant"
        "$actor.optim.lr_warmup_steps=$VERL_WARMUP_STEPS"
        "$actor.optim.weight_decay=0"
        "$actor.optim.betas=[0.9,0.95]"  # OpenRLHF's Adam betas (--actor.adam.betas); verl's 0.999
        "$actor.loss_agg_mode=token-mean"
        "$actor.ppo_mini_batch_size=$VERL_MINI_BATCH"
        "$actor.ppo_micro_batch_size_per_gpu=$TRAIN_MICRO_BATCH_SIZE"
        "$actor.ppo_epochs=$PPO_EPOCHS"
        "$actor.fsdp_config.optimizer_offload=True"
        "$actor.checkpoint.save_contents=[model,optimizer,extra,hf_model]"
        # the critic: value clip (verl's default 0.5), learning rate, the same batches
        critic.strategy=fsdp
        "critic.cliprange_value=$VALUE_CLIP"
        "critic.optim.lr=$CRITIC_LR"
        critic.optim.lr_scheduler_type=constant
        "critic.optim.lr_warmup_steps=$VERL_WARMUP_STEPS"
        critic.optim.weight_decay=0
        "critic.optim.betas=[0.9,0.95]"
        "critic.ppo_mini_batch_size=$VERL_MINI_BATCH"
        "critic.ppo_micro_batch_size_per_gpu=$TRAIN_MICRO_BATCH_SIZE"
        "critic.ppo_epochs=$PPO_EPOCHS"
        critic.fsdp.optimizer_offload=True
        # the rollout: vLLM, n samples at the paper's temperature; validation as the release's eval
        "$rollout.name=vllm"
        "$rollout.n=$N_SAMPLES_PER_PROMPT"
        "$rollout.temperature=$TEMPERATURE"
        "$rollout.top_p=$TOP_P"
        "$rollout.top_k=-1"
        "$rollout.tensor_model_parallel_size=$VLLM_TP"
        "$rollout.gpu_memory_utilization=$VERL_GPU_MEMORY"
        "$rollout.log_prob_micro_batch_size_per_gpu=$VERL_LOG_PROB_MICRO_BATCH"
        "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=$VERL_LOG_PROB_MICRO_BATCH"
        "$rollout.val_kwargs.do_sample=True"
        "$rollout.val_kwargs.temperature=$EVAL_TEMPERATURE"
        "$rollout.val_kwargs.top_p=$TOP_P"
        "$rollout.val_kwargs.n=$EVAL_N_SAMPLES"
        # the reward: ours (train/verl_reward.py), through the manager that keeps the end-of-turn marker
        "reward.custom_reward_function.path=$reward_file"
        reward.custom_reward_function.name=compute_score
        "+reward.custom_reward_function.reward_kwargs.grader=$GRADER"
        reward.reward_manager.source=importlib
        reward.reward_manager.name=LimrRewardManager
        "reward.reward_manager.module.path=$reward_file"
        # the run: steps, layout, dumps for LIM, checkpoints, logs
        "trainer.use_v1=$VERL_USE_V1"
        "trainer.total_training_steps=$VERL_TRAIN_STEPS"
        "trainer.total_epochs=$VERL_EPOCHS"
        trainer.critic_warmup=0
        "trainer.nnodes=$NNODES"
        "trainer.n_gpus_per_node=$GPUS_PER_NODE"
        "trainer.rollout_data_dir=$RUN_DIR/rollouts"
        "trainer.validation_data_dir=$RUN_DIR/validation"
        "trainer.test_freq=$EVAL_STEPS"
        "trainer.save_freq=$SAVE_STEPS"
        "trainer.default_local_dir=$RUN_DIR/ckpt"
        "trainer.project_name=$WANDB_PROJECT"
        "trainer.experiment_name=$RUN"
        "trainer.logger=$VERL_LOGGER"
    )
}

show_verl() {  # the command, one override a line
    printf '+ %s' "$1"
    shift
    local arg quoted
    for arg in "$@"; do
        printf -v quoted '%q' "$arg"
        printf ' \\\n    %s' "$quoted"
    done
    printf '\n'
}

print_verl_plan() {
    echo "# $RUN on verl 0.9.1: $PROMPT_ROWS prompts = $STEPS_PER_EPOCH steps per pass (verl drops the partial batch)," \
        "$VERL_TRAIN_STEPS steps; model $MODEL; PRESET=$PRESET ($NNODES x $GPUS_PER_NODE GPUs, every model on every GPU)"
    echo "# LIM after this run: python lim_selection.py --train_samples_path $RUN_DIR/rollouts" \
        "--steps_per_epoch $STEPS_PER_EPOCH ...  (verl's dumps: one {step}.jsonl per step)"
}

launch_verl() {  # the checks, Ray on every node, then verl's PPO driver in the foreground; exits
    verl_settings
    check_settings
    check_verl_settings
    check_machine
    derive_verl_schedule
    verl_twin "$PROMPTS" train "$PROMPTS_CMD"
    VERL_TRAIN_FILE=$VERL_TWIN
    verl_twin "$VALIDATION" eval "python data/prepare.py"
    VERL_VAL_FILE=$VERL_TWIN
    verl_overrides
    print_verl_plan
    set_exit_trap
    if ((NODE_RANK > 0)); then
        join_head
        exit 0
    fi
    [[ $DRY_RUN == 1 || ! -d $RUN_DIR/rollouts ]] \
        || die "$RUN_DIR/rollouts exists from an earlier run: move it away or set OUT to a new folder"
    start_ray_head
    show_verl "python3 -m verl.trainer.main_ppo" "${VERL_ARGS[@]}"
    [[ $DRY_RUN == 1 ]] || python3 -m verl.trainer.main_ppo "${VERL_ARGS[@]}"
    exit 0
}
