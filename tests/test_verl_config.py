"""BACKEND=verl: the training scripts' dry runs, composed with verl 0.9.1's own Hydra config and checked by verl.

`compose` runs in a subprocess with hydra-core 1.3.8 / omegaconf 2.3.1 / antlr 4.9.3 first on the path (make setup
puts them in .venv/verl-hydra13): verl's ppo_trainer.yaml needs Hydra 1.3 (1.4 refuses its '../optim' defaults),
whose antlr 4.9 cannot share a process with math-verify's 4.13 (requirements-cpu.txt). There, Hydra composes
verl/trainer/config/ppo_trainer.yaml with the printed overrides (an unknown key fails, as on the cluster), and verl's
own checks run on the result: validate_config (verl/utils/config.py) and the dataclasses main_ppo builds
(omega_conf_to_dataclass), then the custom reward function is loaded as verl loads it (get_custom_reward_fn).
"""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from limr.dataset import write_prompt_files

pytest.importorskip("verl")

ROOT = Path(__file__).resolve().parents[1]
HYDRA13 = Path(sys.prefix) / "verl-hydra13"
VERL_CMD = "+ python3 -m verl.trainer.main_ppo"
RUNS = {"train_math.8k.sh": 8523, "train_limr.sh": 1389, "train_rand.sh": 1389, "train_linear.sh": 1160}
PROMPT_FILES = {
    "train_math.8k.sh": "math8k",
    "train_limr.sh": "limr",
    "train_rand.sh": "rand",
    "train_linear.sh": "linear",
}

COMPOSE = r"""
import json, os, sys, verl
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from verl.trainer.ppo.reward import get_custom_reward_fn
from verl.utils.config import omega_conf_to_dataclass, validate_config

args = json.loads(sys.stdin.read())
results = {}
for name, overrides in args["cases"].items():
    with initialize_config_dir(config_dir=os.path.join(os.path.dirname(verl.__file__), "trainer/config"),
                               version_base=None):
        cfg = compose(config_name="ppo_trainer", overrides=overrides)
    composed = OmegaConf.to_container(cfg, resolve=True)
    cfg.critic.model.path = args["local_model"]  # the critic's dataclass reads the model's files: a local tiny one
    validate_config(cfg, use_reference_policy=True, use_critic=True)
    for node in (cfg.algorithm, cfg.actor_rollout_ref.actor, cfg.critic, cfg.actor_rollout_ref.rollout):
        omega_conf_to_dataclass(node)
    fn = get_custom_reward_fn(cfg)
    results[name] = {"config": composed, "reward_kwargs": fn.args[1], "reward_fn": fn.args[0].__name__}
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def local_model(tmp_path_factory) -> Path:
    """A tiny Qwen2 model folder (config and tokenizer, no weights): what verl's HFModelConfig reads."""
    from transformers import Qwen2Config

    from mini.policy import build_tokenizer

    path = tmp_path_factory.mktemp("model")
    tokenizer = build_tokenizer()
    tokenizer.save_pretrained(path)
    Qwen2Config(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                num_attention_heads=2, num_key_value_heads=1, architectures=["Qwen2ForCausalLM"]).save_pretrained(path)  # fmt: skip
    return path


def compose(cases: dict[str, list[str]], local_model: Path) -> dict:
    """{case: overrides} -> {case: {"config": the composed config, resolved; "reward_kwargs", "reward_fn"}}."""
    if not (HYDRA13 / "hydra").is_dir():
        pytest.skip(f"{HYDRA13} not found: make setup installs hydra-core 1.3.8 there (Makefile, VERL_HYDRA)")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HYDRA13), str(ROOT)]), HF_HUB_OFFLINE="1")
    proc = subprocess.run(
        [sys.executable, "-c", COMPOSE], input=json.dumps({"cases": cases, "local_model": str(local_model)}),
        env=env, capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """Prompt files of the paper's sizes (each with its .json, which the verl twin is made from)."""
    root = tmp_path_factory.mktemp("data")
    for name, rows in (("math8k", 8523), ("limr", 1389), ("rand", 1389), ("linear", 1160), ("validation", 256)):
        items = [{"id": f"{name}-{i}", "prompt": f"What is {i}+1?", "answer": str(i + 1)} for i in range(rows)]
        write_prompt_files(root / f"{name}.json", items, split="eval" if name == "validation" else "train")
    return root


def dry_run(data: Path, script: str = "train_math.8k.sh", **env) -> subprocess.CompletedProcess:
    full = dict(
        os.environ, BACKEND="verl", DRY_RUN="1", OUT=str(data / "out"), VALIDATION=str(data / "validation.jsonl")
    )
    for var, name in (("MATH8K_PROMPTS", "math8k"), ("LIMR_PROMPTS", "limr"), ("RAND_PROMPTS", "rand"),
                      ("LINEAR_PROMPTS", "linear")):  # fmt: skip
        full[var] = str(data / f"{name}.jsonl")
    full.pop("WANDB_API_KEY", None)
    full.update({k: str(v) for k, v in env.items()})
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / script)], env=full, capture_output=True, text=True, timeout=120
    )


def overrides(stdout: str) -> list[str]:
    """The overrides of the printed verl command (one a line, continued by trailing backslashes)."""
    lines = stdout.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(VERL_CMD)]
    assert len(starts) == 1, stdout
    text, i = lines[starts[0]], starts[0]
    while text.endswith(" \\"):
        i += 1
        text = text[:-2] + " " + lines[i]
    return shlex.split(text)[4:]


def get(cfg: dict, key: str):
    for part in key.split("."):
        cfg = cfg[part]
    return cfg


# Each paper value (../shared/DESIGN.md; train_common.sh's block) as verl 0.9.1's composed config must hold it, with
# verl's default beside it where it differs today (the list, checked in verl's yaml files).
PAPER = [
    ("actor_rollout_ref.model.path", "Qwen/Qwen2.5-Math-7B"),  # policy from the base model
    ("critic.model.path", "Qwen/Qwen2.5-Math-7B"),  # so is the critic
    ("algorithm.adv_estimator", "gae"),  # PPO with GAE
    ("algorithm.lam", 0.95),  # verl's default 1.0
    ("algorithm.gamma", 1.0),
    ("algorithm.use_kl_in_reward", True),  # the KL penalty in the reward, as OpenRLHF's PPO; verl's default False
    ("algorithm.kl_ctrl.kl_coef", 0.01),  # verl's default 0.001
    ("algorithm.kl_ctrl.type", "fixed"),  # a fixed coefficient
    ("algorithm.kl_penalty", "kl"),  # k1, OpenRLHF's default estimator
    ("actor_rollout_ref.actor.use_kl_loss", False),  # not also as a loss
    ("actor_rollout_ref.actor.clip_ratio", 0.2),
    ("actor_rollout_ref.actor.clip_ratio_low", 0.2),
    ("actor_rollout_ref.actor.clip_ratio_high", 0.2),
    ("critic.cliprange_value", 0.2),  # verl's default 0.5
    ("actor_rollout_ref.actor.optim.lr", 5e-7),
    ("critic.optim.lr", 9e-6),
    ("actor_rollout_ref.actor.optim.weight_decay", 0),  # OpenRLHF's default l2 0; verl's 0.01
    ("critic.optim.weight_decay", 0),
    ("actor_rollout_ref.actor.optim.betas", [0.9, 0.95]),  # OpenRLHF's Adam betas; verl's (0.9, 0.999)
    ("critic.optim.betas", [0.9, 0.95]),
    ("actor_rollout_ref.actor.loss_agg_mode", "token-mean"),  # OpenRLHF's --actor.loss_agg_mode default
    ("actor_rollout_ref.actor.optim.lr_scheduler_type", "constant"),
    ("actor_rollout_ref.actor.optim.lr_warmup_steps", 0),  # 10 optimizer steps are a third of one verl step
    ("data.train_batch_size", 1024),  # prompts per step
    ("actor_rollout_ref.rollout.n", 8),  # samples per prompt
    ("actor_rollout_ref.rollout.temperature", 1.2),
    ("actor_rollout_ref.rollout.top_p", 1.0),
    ("data.max_prompt_length", 1024),
    ("actor_rollout_ref.rollout.prompt_length", 1024),  # the rollout reads the data's lengths
    ("data.max_response_length", 3072),
    ("actor_rollout_ref.rollout.response_length", 3072),
    ("actor_rollout_ref.actor.ppo_mini_batch_size", 32),  # 256 sequences = 32 prompts x 8 (verl counts prompts)
    ("critic.ppo_mini_batch_size", 32),
    ("actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu", 4),
    ("critic.ppo_micro_batch_size_per_gpu", 4),
    ("actor_rollout_ref.actor.ppo_epochs", 1),  # 1 PPO epoch per rollout
    ("critic.ppo_epochs", 1),
    ("actor_rollout_ref.model.enable_gradient_checkpointing", True),
    ("critic.model.enable_gradient_checkpointing", True),
    ("actor_rollout_ref.model.use_remove_padding", True),  # packing
    ("actor_rollout_ref.actor.fsdp_config.optimizer_offload", True),  # Adam offload
    ("critic.fsdp.optimizer_offload", True),
    ("actor_rollout_ref.actor.fsdp_config.dtype", "bfloat16"),  # bf16
    ("data.shuffle", True),
    ("data.seed", 42),  # verl's default null
    ("actor_rollout_ref.rollout.val_kwargs.temperature", 0.7),  # the release's eval
    ("actor_rollout_ref.rollout.val_kwargs.do_sample", True),
    ("actor_rollout_ref.rollout.val_kwargs.n", 1),
    ("trainer.test_freq", 1),
    ("trainer.save_freq", 1),
    ("trainer.total_training_steps", 168),  # 21 passes of 8 steps (verl drops the partial batch)
    ("trainer.total_epochs", 21),
    ("trainer.nnodes", 2),  # PRESET=paper: 2 nodes x 8 GPUs
    ("trainer.n_gpus_per_node", 8),
    ("trainer.use_v1", False),  # the legacy loop: its dumps carry our prompt_id
    ("reward.custom_reward_function.name", "compute_score"),
    ("reward.reward_manager.source", "importlib"),
    ("reward.reward_manager.name", "LimrRewardManager"),
]


BLOCK_CHANGES = {"GAE_LAMBDA": 0.9, "KL_COEF": 0.05, "VALUE_CLIP": 0.3, "TRAIN_BATCH_SIZE": 512, "SEED": 7,
                 "GRADER": "limr", "ACTOR_LR": 1e-6, "TEMPERATURE": 1.0, "VERL_USE_V1": "True"}  # fmt: skip


@pytest.fixture(scope="module")
def runs(data, local_model):
    """The dry runs the tests below read, each composed by verl (one subprocess for all): {case: (stdout, result)}."""
    envs = {"paper": {}, "node": {"PRESET": "node"}, "single": {"PRESET": "single"}, "changed": BLOCK_CHANGES}
    stdouts = {}
    for name, env in envs.items():
        r = dry_run(data, **env)
        assert r.returncode == 0, r.stderr
        stdouts[name] = r.stdout
    results = compose({name: overrides(out) for name, out in stdouts.items()}, local_model)
    return {name: (stdouts[name], results[name]) for name in envs}


@pytest.fixture(scope="module")
def full_run(runs):
    return runs["paper"]


def test_every_paper_value_lands_in_verls_config(full_run, data):
    stdout, out = full_run
    cfg = out["config"]
    wrong = {key: (get(cfg, key), want) for key, want in PAPER if get(cfg, key) != want}
    assert wrong == {}
    reward_file = str(ROOT / "train" / "verl_reward.py")
    assert get(cfg, "reward.custom_reward_function.path") == reward_file
    assert get(cfg, "reward.reward_manager.module.path") == reward_file
    assert out["reward_fn"] == "compute_score" and out["reward_kwargs"] == {"grader": "default"}
    assert get(cfg, "trainer.rollout_data_dir") == str(data / "out" / "math8k" / "rollouts")
    assert get(cfg, "data.train_files") == str(data / "math8k.parquet")
    assert get(cfg, "data.val_files") == str(data / "validation.parquet")
    # the parquet twins do not exist yet: the dry run prints the commands that make them
    made = [line for line in stdout.replace(" \\\n   ", "").splitlines() if "limr.verl_data" in line]
    assert made == [
        f"+ python3 -m limr.verl_data {data / 'math8k.json'} --split train",
        f"+ python3 -m limr.verl_data {data / 'validation.json'} --split eval",
    ]
    assert "--steps_per_epoch 8" in stdout  # what LIM selection needs to count verl's epochs


def test_only_one_key_is_added_to_verls_config(full_run):
    """Every override but one names a key verl's yaml declares (Hydra refuses the others): the added one is the
    reward function's keyword arguments, which verl reads with .get (get_custom_reward_fn)."""
    stdout, _ = full_run
    assert [o for o in overrides(stdout) if o.startswith("+")] == [
        "+reward.custom_reward_function.reward_kwargs.grader=default"
    ]


def test_the_values_come_from_train_commons_block(runs):
    _, out = runs["changed"]
    cfg = out["config"]
    assert get(cfg, "algorithm.lam") == 0.9 and get(cfg, "algorithm.kl_ctrl.kl_coef") == 0.05
    assert get(cfg, "critic.cliprange_value") == 0.3 and get(cfg, "data.seed") == 7
    assert get(cfg, "actor_rollout_ref.actor.ppo_mini_batch_size") == 64  # 512 / 8
    assert get(cfg, "actor_rollout_ref.actor.optim.lr") == 1e-6
    assert get(cfg, "actor_rollout_ref.rollout.temperature") == 1.0
    assert get(cfg, "trainer.use_v1") is True
    assert out["reward_kwargs"] == {"grader": "limr"}


@pytest.mark.parametrize("preset, nodes, gpus", [("node", 1, 8), ("single", 1, 1)])
def test_the_presets_pass_verls_checks(runs, preset, nodes, gpus):
    """verl's validate_config and dataclasses accept each layout (batch sizes divide by the GPUs)."""
    cfg = runs[preset][1]["config"]
    assert (get(cfg, "trainer.nnodes"), get(cfg, "trainer.n_gpus_per_node")) == (nodes, gpus)
    assert get(cfg, "trainer.total_training_steps") == 168


@pytest.mark.parametrize("script", list(RUNS))
@pytest.mark.parametrize("preset, nodes, gpus, model", [
    ("paper", 2, 8, "Qwen/Qwen2.5-Math-7B"),
    ("node", 1, 8, "Qwen/Qwen2.5-Math-7B"),
    ("single", 1, 1, "Qwen/Qwen2.5-Math-1.5B"),
])  # fmt: skip
def test_every_run_and_preset(data, script, preset, nodes, gpus, model):
    r = dry_run(data, script, PRESET=preset)
    assert r.returncode == 0, r.stderr
    args = overrides(r.stdout)
    steps_per_pass = RUNS[script] // 1024
    assert f"trainer.total_epochs={-(-168 // steps_per_pass)}" in args  # enough passes for the same 168 steps
    assert f"trainer.nnodes={nodes}" in args and f"trainer.n_gpus_per_node={gpus}" in args
    assert f"actor_rollout_ref.model.path={model}" in args and f"critic.model.path={model}" in args
    assert f"data.train_files={data / Path(PROMPT_FILES[script]).with_suffix('.parquet')}" in args


def test_the_openrlhf_path_is_the_default(data):
    env = dict(os.environ, DRY_RUN="1", OUT=str(data / "out"), MATH8K_PROMPTS=str(data / "math8k.jsonl"),
               VALIDATION=str(data / "validation.jsonl"))  # fmt: skip
    env.pop("BACKEND", None)
    r = subprocess.run(["bash", str(ROOT / "scripts" / "train_math.8k.sh")], env=env, capture_output=True, text=True,
                       timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "+ python3 -m openrlhf.cli.train_ppo_ray" in r.stdout and VERL_CMD not in r.stdout


@pytest.mark.parametrize(
    "env, message",
    [
        ({"BACKEND": "deepspeed"}, "BACKEND must be openrlhf or verl, got 'deepspeed'"),
        ({"VERL_USE_V1": "yes"}, "VERL_USE_V1 must be True or False, got 'yes'"),
        ({"TRAIN_BATCH_SIZE": "252"}, "TRAIN_BATCH_SIZE (252) must be a multiple of N_SAMPLES_PER_PROMPT (8)"),
        ({"ROLLOUT_BATCH_SIZE": "9000"}, "has 8523 rows: fewer than one rollout batch (9000)"),
        ({"VERL_TRAIN_STEPS": "0"}, "VERL_TRAIN_STEPS must be a whole number >= 1, got '0'"),
    ],
)
def test_bad_settings_stop_with_one_error_line(data, env, message):
    r = dry_run(data, **env)
    assert r.returncode == 2
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], r.stderr
    assert VERL_CMD not in r.stdout


def test_a_missing_prompt_json_names_the_command_that_makes_it(data, tmp_path):
    (tmp_path / "limr.jsonl").write_text((data / "limr.jsonl").read_text())  # the .jsonl without its .json
    r = dry_run(data, "train_limr.sh", LIMR_PROMPTS=tmp_path / "limr.jsonl")
    assert r.returncode == 2
    assert f"error: {tmp_path / 'limr.json'} not found (verl's parquet is made from it): make it with: python " \
        "lim_selection.py" in r.stderr  # fmt: skip


def test_an_existing_twin_is_used_as_it_is(data, tmp_path):
    from limr.verl_data import write_verl_parquet

    items = [{"id": f"x{i}", "prompt": f"{i}+1", "answer": str(i + 1)} for i in range(1024)]
    write_prompt_files(tmp_path / "limr.json", items)
    write_verl_parquet(tmp_path / "limr.parquet", items)  # newer than limr.json
    r = dry_run(data, "train_limr.sh", LIMR_PROMPTS=tmp_path / "limr.jsonl")
    assert r.returncode == 0, r.stderr
    assert f"data.train_files={tmp_path / 'limr.parquet'}" in overrides(r.stdout)
    assert f"limr.verl_data {tmp_path / 'limr.json'}" not in r.stdout


def test_the_verl_library_defines_functions_only():
    """Sourcing scripts/lib/verl.sh runs nothing and sets no variable, as scripts/lib/launch.sh; its syntax is bash's."""
    library = ROOT / "scripts" / "lib" / "verl.sh"
    assert subprocess.run(["bash", "-n", str(library)]).returncode == 0
    probe = 'before=; before=$(compgen -v | sort); source "$1"; [[ $(compgen -v | sort) == "$before" ]] && declare -F'
    r = subprocess.run(["bash", "-c", probe, "probe", str(library)], capture_output=True, text=True)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert "launch_verl" in r.stdout


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
def test_shellcheck_verl_library():
    files = ["scripts/train_common.sh", "scripts/lib/verl.sh"]
    r = subprocess.run(["shellcheck", "-x", *files], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout


def backends_table() -> list[list[str]]:
    """The rows of README.md's "Backends" table: [paper, value, OpenRLHF, verl]."""
    text = (ROOT / "README.md").read_text().split("## Backends", 1)[1].split("\n## ", 1)[0]
    rows = [line.strip("|").split(" | ") for line in text.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in row] for row in rows[1:]]  # after the header


def test_the_readmes_backends_table_names_the_flags_the_scripts_pass(full_run, data):
    """Each verl key (and key=value) in the table is in the printed verl command, each OpenRLHF flag in the OpenRLHF
    command: the table cannot drift from scripts/lib/verl.sh and train_common.sh."""
    verl_args = {o.lstrip("+").split("=", 1)[0]: o.split("=", 1)[1] for o in overrides(full_run[0])}
    env = dict(os.environ, DRY_RUN="1", OUT=str(data / "out"), MATH8K_PROMPTS=str(data / "math8k.jsonl"),
               VALIDATION=str(data / "validation.jsonl"), BACKEND="openrlhf")  # fmt: skip
    r = subprocess.run(["bash", str(ROOT / "scripts" / "train_math.8k.sh")], env=env, capture_output=True, text=True,
                       timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    openrlhf_flags = set(re.findall(r"(--[a-z_.]+)", r.stdout))
    rows = backends_table()
    assert len(rows) >= 15 and all(len(row) == 4 for row in rows), rows
    for _, _, openrlhf, verl in rows:
        for flag in re.findall(r"`(--[a-z_.]+)", openrlhf):
            assert flag in openrlhf_flags, flag
        for key, value in re.findall(r"`([a-z_]+\.[a-z_.]+)(?:=([^`]*))?`", verl):
            assert key in verl_args, key
            assert not value or verl_args[key] == value, (key, value, verl_args[key])
    assert any("none: verl has no counterpart" in row[3] for row in rows if "normalisation" in row[0])
