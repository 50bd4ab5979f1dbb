"""The training scripts: their dry runs parsed by the installed OpenRLHF 0.11.2's own parser, the paper's values,
the presets, the multi-node roles, their errors, and one whole launch with stand-ins for the GPU-only programs.

OpenRLHF builds its parser under `if __name__ == "__main__"` in openrlhf/cli/train_ppo_ray.py, next to imports of
ray and vllm that need a GPU stack. `openrlhf_args` runs that block itself (its add_argument calls, parse_args,
hierarchize and every check after it) with `train()` swapped for a function that keeps the parsed arguments, so an
unknown flag or a bad value fails here as it would on the cluster. The launcher's arithmetic copied from OpenRLHF
(steps, LR warmup, gradient accumulation) is checked against the installed OpenRLHF's own expressions, taken from
its source files by `openrlhf_expr` (the modules that hold them import ray, vLLM or DeepSpeed, which a CPU lacks).
"""

import argparse
import ast
import contextlib
import datetime
import io
import json
import math
import os
import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import openrlhf
import pytest

from limr.dataset import write_prompt_files

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"
RUNS = {  # script -> (run folder, the env var of its prompt file, rows of the paper's file)
    "train_math.8k.sh": ("math8k", "MATH8K_PROMPTS", 8523),
    "train_limr.sh": ("limr", "LIMR_PROMPTS", 1389),
    "train_rand.sh": ("rand", "RAND_PROMPTS", 1389),
    "train_linear.sh": ("linear", "LINEAR_PROMPTS", 1160),  # the paper's LINEAR has 1,138-1,189
}
PRESETS = ("paper", "node", "single")
TRAIN_CMD = "+ python3 -m openrlhf.cli.train_ppo_ray"
SRC = Path(openrlhf.__file__).parent  # the installed OpenRLHF 0.11.2


# ---- OpenRLHF's own code, from its installed source files ---------------------------------------------------------


def openrlhf_source(relpath: str, names: list[str], namespace: dict) -> dict:
    """Execute the named top-level functions and classes of an installed OpenRLHF file in `namespace`."""
    tree = ast.parse((SRC / relpath).read_text())
    nodes = [n for n in tree.body if getattr(n, "name", None) in names]
    assert sorted(n.name for n in nodes) == sorted(names), f"{relpath}: expected {names}"
    exec(compile(ast.Module(body=nodes, type_ignores=[]), str(SRC / relpath), "exec"), namespace)
    return namespace


def method(relpath: str, cls: str, name: str, namespace: dict):
    """One method of an installed OpenRLHF class, compiled on its own (its class imports ray at definition)."""
    tree = ast.parse((SRC / relpath).read_text())
    (klass,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls]
    (fn,) = [n for n in klass.body if isinstance(n, ast.FunctionDef) and n.name == name]
    exec(compile(ast.Module(body=[fn], type_ignores=[]), str(SRC / relpath), "exec"), namespace)
    return namespace[name]


def openrlhf_expr(relpath: str, function: str, name: str):
    """The one expression that `function` in an installed OpenRLHF file assigns to `name` (a variable, `self.x`, or a
    keyword argument), compiled: called with the names it reads, it computes what OpenRLHF computes."""
    tree = ast.parse((SRC / relpath).read_text())
    found = [
        node.value
        for fn in ast.walk(tree)
        if isinstance(fn, ast.FunctionDef) and fn.name == function
        for node in ast.walk(fn)
        if (isinstance(node, ast.keyword) and node.arg == name)
        or (isinstance(node, ast.Assign) and [ast.unparse(t) for t in node.targets] == [name])
    ]
    assert len(found) == 1, f"{relpath}: expected one `{name}` in {function}, found {len(found)}"
    code = compile(ast.Expression(found[0]), str(SRC / relpath), "eval")
    return lambda **names: eval(code, {"math": math}, names)  # installed library code, as `exec` above


# ppo_trainer.prepare_datasets: the scheduler's steps (every optimizer step of every episode, from the dataset size)
MAX_STEPS = openrlhf_expr("trainer/ppo_trainer.py", "prepare_datasets", "max_steps")
# DeepspeedStrategy._ds_init_train_model: the warmup steps, rounded up from the ratio
WARMUP = openrlhf_expr("utils/deepspeed/deepspeed.py", "_ds_init_train_model", "num_warmup_steps")
# DeepspeedStrategy.setup_distributed: micro-batches per optimizer step on each rank
ACCUMULATION = openrlhf_expr("utils/deepspeed/deepspeed.py", "setup_distributed", "self.accumulated_gradient")


# ---- Running OpenRLHF's own parser ------------------------------------------------------------------------------


def compile_openrlhf_main():
    """The `if __name__ == "__main__":` block of the installed train_ppo_ray.py, compiled."""
    path = Path(openrlhf.__file__).parent / "cli" / "train_ppo_ray.py"
    tree = ast.parse(path.read_text())
    main = [n for n in tree.body if isinstance(n, ast.If) and "__main__" in ast.unparse(n.test)]
    assert len(main) == 1, f"{path}: expected one __main__ block"
    return compile(ast.Module(body=main[0].body, type_ignores=[]), str(path), "exec")


@pytest.fixture(scope="session")
def openrlhf_main():
    return compile_openrlhf_main()


def openrlhf_args(code, argv: list[str]) -> SimpleNamespace:
    """Parse argv exactly as `python3 -m openrlhf.cli.train_ppo_ray` does; a parser error raises ValueError."""
    seen = []
    namespace = {"argparse": argparse, "datetime": datetime.datetime, "os": os, "train": seen.append}
    old_argv, err = sys.argv, io.StringIO()
    sys.argv = ["train_ppo_ray.py", *argv]
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            exec(code, namespace)
    except SystemExit as e:
        raise ValueError(f"OpenRLHF 0.11.2 rejects the command line: {err.getvalue().strip()}") from e
    finally:
        sys.argv = old_argv
    assert len(seen) == 1, "the __main__ block did not reach train(args)"
    return seen[0]


def get(args: SimpleNamespace, dotted: str):
    for part in dotted.split("."):
        args = getattr(args, part)
    return args


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--actor_learning_rate", "5e-7"], "unrecognized arguments"),  # the paper fork's flat flag is gone in 0.11
        (["--algo.advantage.estimator", "ppo"], "invalid choice"),  # a value outside the choices
        (["--rollout.batch_size", "1k"], "invalid int value"),  # a value of the wrong type
    ],
)
def test_the_parser_harness_rejects_what_openrlhf_rejects(openrlhf_main, argv, message):
    base = ["--actor.model_name_or_path", "m", "--reward.remote_url", "http://h/get_reward", "--vllm.num_engines", "1"]
    assert openrlhf_args(openrlhf_main, base).actor.model_name_or_path == "m"
    with pytest.raises(ValueError, match=message):
        openrlhf_args(openrlhf_main, base + argv)


# ---- Running the scripts ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def data(tmp_path_factory) -> Path:
    """Prompt files the size of the paper's, in the OpenRLHF format limr.dataset writes (the LIM outputs under out/lim)."""
    root = tmp_path_factory.mktemp("data")

    def rows(n):
        return [
            {"id": f"q{i}", "prompt": f"What is {i} + 1?", "answer": str(i + 1), "source": "math"} for i in range(n)
        ]

    write_prompt_files(root / "math8k.json", rows(8523))
    write_prompt_files(root / "validation.json", rows(256), split="eval")
    for name in ("limr", "rand", "linear"):
        (root / "out" / "lim").mkdir(parents=True, exist_ok=True)
        write_prompt_files(root / "out" / "lim" / f"{name}.json", rows(RUNS[f"train_{name}.sh"][2]))
    return root


def stub_bin(path: Path, stubs: dict[str, str]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for name, body in stubs.items():
        (path / name).write_text(body)
        (path / name).chmod(0o755)
    return path


RECORDER = '#!/bin/bash\necho "$(basename "$0") $*" >>"$STUB_LOG"\n'
# ray, recording what every Ray process it starts inherits
RAY = '#!/bin/bash\necho "ray $* DS_SKIP_CUDA_CHECK=${DS_SKIP_CUDA_CHECK:-unset}" >>"$STUB_LOG"\n'


def nvidia_smi(gpus: int) -> str:
    return (
        f'#!/bin/bash\nfor ((i = 0; i < {gpus}; i++)); do echo "GPU $i: NVIDIA H100 80GB HBM3 (UUID: GPU-$i)"; done\n'
    )


def script_env(data: Path, tmp_path: Path, path: str, **env) -> dict:
    out = {
        "PATH": path,
        "HOME": str(tmp_path),
        "STUB_LOG": str(tmp_path / "stub.log"),
        "OUT": str(data / "out"),
        "MATH8K_PROMPTS": str(data / "math8k.jsonl"),
        "VALIDATION": str(data / "validation.jsonl"),
    }
    out.update({k: str(v) for k, v in env.items()})
    return out


def run_script(script: str, env: dict) -> subprocess.CompletedProcess:
    # timeout: a hang guard only (a loaded CI machine starts the real reward server slowly)
    return subprocess.run(["bash", str(SCRIPTS / script)], env=env, capture_output=True, text=True, timeout=300)


def dry_run(data: Path, tmp_path: Path, script: str = "train_math.8k.sh", **env) -> subprocess.CompletedProcess:
    """DRY_RUN=1 with recorders in front of ray, python3 and nvidia-smi: a dry run must call none of them."""
    stubs = stub_bin(tmp_path / "bin", {"ray": RECORDER, "python3": RECORDER, "nvidia-smi": RECORDER})
    env = script_env(data, tmp_path, f"{stubs}:{os.environ['PATH']}", DRY_RUN=1, **env)
    return run_script(script, env)


def command(stdout: str, first: str) -> list[str]:
    """The words of the printed command whose first line starts with `first` (continued by trailing backslashes)."""
    lines = stdout.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(first)]
    assert len(starts) == 1, f"expected one command starting {first!r}:\n{stdout}"
    text, i = lines[starts[0]], starts[0]
    while text.endswith(" \\"):
        i += 1
        text = text[:-2] + " " + lines[i]
    return shlex.split(text)[1:]


def train_argv(stdout: str) -> list[str]:
    return command(stdout, TRAIN_CMD)[3:]


@pytest.fixture
def dry(data, tmp_path, openrlhf_main):
    """Dry-run a script and parse its training command with OpenRLHF: (the parsed args, stdout)."""

    def go(script="train_math.8k.sh", **env):
        r = dry_run(data, tmp_path, script, **env)
        assert r.returncode == 0, r.stderr
        return openrlhf_args(openrlhf_main, train_argv(r.stdout)), r.stdout

    return go


# ---- The paper's values ------------------------------------------------------------------------------------------

# Each OpenRLHF 0.11.2 setting the paper fixes (../shared/DESIGN.md table; the release's scripts/train_math.8k.sh).
PAPER = [
    ("actor.model_name_or_path", "Qwen/Qwen2.5-Math-7B"),  # policy starts from the base model
    ("critic.model_name_or_path", "Qwen/Qwen2.5-Math-7B"),  # so does the critic
    ("algo.advantage.estimator", "gae"),  # PPO with GAE
    ("algo.advantage.lambd", 0.95),  # GAE λ
    ("algo.advantage.gamma", 1.0),  # GAE γ
    ("algo.kl.init_coef", 0.01),  # KL coefficient
    ("algo.kl.target", None),  # a fixed KL coefficient, not an adaptive one
    ("actor.eps_clip", 0.2),  # PPO clip
    ("critic.value_clip", 0.2),  # value clip
    ("actor.adam.lr", 5e-7),  # actor learning rate
    ("critic.adam.lr", 9e-6),  # critic learning rate
    ("rollout.batch_size", 1024),  # prompts per step
    ("rollout.n_samples_per_prompt", 8),  # samples per prompt
    ("rollout.temperature", 1.2),  # rollout temperature
    ("rollout.max_new_tokens", 3072),  # response ≤ 3,072 tokens
    ("data.max_len", 1024 + 3072),  # prompt ≤ 1,024 tokens: 0.11 cuts prompts to max_len - max_new_tokens
    ("train.batch_size", 256),  # train batch
    ("train.micro_batch_size", 4),  # micro batch
    ("train.max_epochs", 1),  # 1 PPO epoch per rollout
    ("ds.zero_stage", 3),  # ZeRO-3
    ("ds.param_dtype", "bf16"),  # bf16
    ("ds.packing_samples", True),  # packing
    ("ds.adam_offload", True),  # Adam offload
    ("actor.gradient_checkpointing_enable", True),  # gradient checkpointing (the critic reads the same flag)
    ("reward.normalize_enable", True),  # reward normalisation
    ("actor.num_nodes", 1),  # layout: actor on 4 GPUs ...
    ("actor.num_gpus_per_node", 4),
    ("critic.num_gpus_per_node", 4),  # ... critic on 4 ...
    ("ref.num_gpus_per_node", 4),  # ... reference on 4 ...
    ("vllm.num_engines", 4),  # ... and 4 vLLM engines ...
    ("vllm.tensor_parallel_size", 1),  # ... of tensor parallel size 1
    ("train.colocate_all", False),  # nothing shared in the paper's layout
    ("data.input_key", "context_messages"),  # the data contract: system + user messages ...
    ("data.apply_chat_template", True),  # ... rendered with the chat template ...
    ("data.label_key", "label"),  # ... and the label the reward server grades with
    ("ckpt.save_hf", True),  # HF checkpoints, which eval reads ...
    ("ckpt.save_steps", 1),  # ... after every step
    ("eval.steps", 1),  # the validation set after every step (release --eval_steps 1)
]


def test_full_run_has_the_papers_values(dry, data):
    args, _ = dry("train_math.8k.sh")
    wrong = {key: (get(args, key), want) for key, want in PAPER if get(args, key) != want}
    assert not wrong, f"(got, paper) per setting: {wrong}"
    assert args.reward.remote_url == [f"http://{os.uname().nodename}:5000/get_reward"]  # the head node's server
    assert args.data.prompt_dataset == str(data / "math8k.jsonl")
    assert args.eval.dataset == str(data / "validation.jsonl")
    assert args.ckpt.path == str(data / "out" / "math8k" / "ckpt")  # eval reads <ckpt.path>/global_step{N}_hf


def warmup_steps(args, rows: int, model: str = "actor") -> int:
    """The LR warmup steps OpenRLHF 0.11.2 gives a model of a run over `rows` prompts, by its own expressions."""
    max_steps = MAX_STEPS(prompts_dataset=range(rows), args=args)
    return WARMUP(scheduler_steps=max_steps, cfg={"lr_warmup_ratio": getattr(args, model).lr_warmup_ratio})


@pytest.mark.parametrize(
    "model, relpath", [("actor", "trainer/ray/ppo_actor.py"), ("critic", "trainer/ray/ppo_critic.py")]
)
def test_the_warmup_reads_the_flags_the_launcher_sets(dry, model, relpath):
    """Each model's optimizer config takes its own --<model>.lr_warmup_ratio and the trainer's max_steps."""
    args, _ = dry()
    ratio = openrlhf_expr(relpath, "init_model_from_pretrained", "lr_warmup_ratio")(args=args)
    assert ratio == getattr(args, model).lr_warmup_ratio > 0
    assert openrlhf_expr(relpath, "init_model_from_pretrained", "scheduler_steps")(max_steps=123) == 123


@pytest.mark.parametrize("script", RUNS)
def test_steps_and_warmup(dry, script):
    args, out = dry(script)
    # FULL reads its prompts in passes; the stage-2 runs read a file of whole batches in one episode (FULL_BATCHES)
    rows = RUNS[script][2] if script == "train_math.8k.sh" else 189 * 1024
    # 0.11 keeps each pass's partial last batch (test_even_split.py runs OpenRLHF's SamplesGenerator for this count)
    steps_per_episode = math.ceil(rows / args.rollout.batch_size)
    steps = steps_per_episode * args.train.num_episodes
    assert 189 <= steps < 189 + steps_per_episode  # TRAIN_STEPS, in whole episodes
    assert warmup_steps(args, rows) == warmup_steps(args, rows, "critic") == 10  # the paper's 10, for both models
    assert args.actor.lr_scheduler == args.critic.lr_scheduler == "constant_with_warmup"
    assert f"{rows} prompts = {steps_per_episode} steps per episode" in out
    if script == "train_math.8k.sh":  # LIM's history: 21 epochs, each one pass over MATH-8k
        assert args.train.num_episodes == 21 and steps == 189 >= 21 * 8


@pytest.mark.parametrize("warmup", [0, 1, 3, 10, 25])
def test_warmup_ratio_gives_exactly_the_asked_steps(dry, warmup):
    args, _ = dry("train_math.8k.sh", LR_WARMUP_STEPS=warmup)
    assert warmup_steps(args, 8523) == warmup_steps(args, 8523, "critic") == warmup


@pytest.mark.parametrize("script", RUNS)
@pytest.mark.parametrize("preset", PRESETS)
def test_every_script_and_preset_parses(dry, script, preset):
    args, _ = dry(script, PRESET=preset)
    # train() itself asserts this for colocated runs (not reached by the harness): one vLLM GPU per actor GPU
    if args.train.colocate_all:
        assert args.actor.num_gpus_per_node == args.vllm.num_engines * args.vllm.tensor_parallel_size
        assert args.actor.num_gpus_per_node == args.ref.num_gpus_per_node  # actor and reference share the GPUs
    assert args.train.seed == 42


@pytest.mark.parametrize(
    "preset, gpus, colocated, model",
    [
        ("paper", 4, False, "Qwen/Qwen2.5-Math-7B"),  # 2 nodes x 8 GPUs, a group of 4 GPUs per model
        ("node", 8, True, "Qwen/Qwen2.5-Math-7B"),  # 1 node x 8 GPUs, every model on every GPU
        ("single", 1, True, "Qwen/Qwen2.5-Math-1.5B"),  # 1 GPU, the 1.5B model
    ],
)
def test_presets(dry, preset, gpus, colocated, model):
    args, out = dry(PRESET=preset)
    assert (args.actor.num_gpus_per_node, args.critic.num_gpus_per_node, args.ref.num_gpus_per_node) == (gpus,) * 3
    assert args.vllm.num_engines == gpus and args.vllm.tensor_parallel_size == 1
    assert args.train.colocate_all == args.vllm.enable_sleep == args.ds.enable_sleep == colocated
    assert args.actor.model_name_or_path == args.critic.model_name_or_path == model
    assert f"({2 if preset == 'paper' else 1} x {8 if preset != 'single' else 1} GPUs)" in out
    assert (args.actor.adam.lr, args.rollout.batch_size) == (5e-7, 1024)  # presets change the layout only


def test_single_preset_keeps_a_model_set_by_the_user(dry):
    args, _ = dry(PRESET="single", MODEL="/models/qwen-math-1.5b-local")
    assert args.actor.model_name_or_path == "/models/qwen-math-1.5b-local"


def test_env_overrides_reach_openrlhf(dry):
    args, _ = dry(ACTOR_LR="1e-6", TEMPERATURE="1.0", ROLLOUT_BATCH_SIZE="512", SAVE_STEPS="5", WANDB_API_KEY="k")
    assert (args.actor.adam.lr, args.rollout.temperature, args.rollout.batch_size) == (1e-6, 1.0, 512)
    assert args.ckpt.save_steps == 5
    assert args.logger.wandb.key == "env"  # wandb on; the key itself stays in the environment


def test_wandb_is_off_without_a_key_and_the_key_never_printed(data, tmp_path, dry):
    args, _ = dry()
    assert args.logger.wandb.key == ""  # falsy: OpenRLHF starts no wandb logger
    r = dry_run(data, tmp_path, WANDB_API_KEY="secret-wandb-key")
    assert "secret-wandb-key" not in r.stdout + r.stderr


# ---- The four runs differ only in their prompts and output folder ----------------------------------------------


def test_run_scripts_differ_only_in_prompts_and_output():
    def body(script):
        lines = (SCRIPTS / script).read_text().splitlines()
        return [x for x in lines if not x.startswith(("#", "RUN=", "PROMPTS=", "PROMPTS_CMD="))]

    bodies = {script: body(script) for script in RUNS}
    assert all(b == bodies["train_math.8k.sh"] for b in bodies.values()), bodies
    for script, (run, var, _) in RUNS.items():
        text = (SCRIPTS / script).read_text()
        assert f"\nRUN={run} " in text and f"PROMPTS=${{{var}:-" in text


def flat(args, prefix="") -> dict:
    out = {}
    for k, v in vars(args).items():
        out.update(flat(v, f"{prefix}{k}.") if isinstance(v, SimpleNamespace) else {f"{prefix}{k}": v})
    return out


def test_training_commands_differ_only_in_prompts_output_and_episodes(dry, data):
    full = flat(dry("train_math.8k.sh")[0])
    for script, (run, _, _) in RUNS.items():
        args = flat(dry(script)[0])
        differ = {k for k in full if full[k] != args[k]}
        if script != "train_math.8k.sh":
            # the run's files, the episodes (and so the warmup ratio) that give its prompt count 189 steps, and the
            # rollout micro batch that splits its partial step evenly (test_even_split.py)
            assert differ - {"rollout.micro_batch_size"} == {
                "data.prompt_dataset", "ckpt.path", "ckpt.output_dir", "logger.tensorboard_dir",
                "logger.wandb.run_name", "train.num_episodes", "actor.lr_warmup_ratio", "critic.lr_warmup_ratio",
            }  # fmt: skip
        assert args["ckpt.path"] == str(data / "out" / run / "ckpt")
        assert args["logger.wandb.run_name"] == run


def test_limr_trains_on_lim_selection_output_as_is(tmp_path, data, dry):
    """lim_selection.py --output_path X/lim/limr.json writes X/lim/limr.jsonl, train_limr.sh's default prompt file."""
    prompts = [
        {"id": f"q{i}", "prompt": f"What is {i} + 1?", "answer": str(i + 1), "source": "math"} for i in range(400)
    ]
    scores = [{"prompt": p["prompt"], "score": i / 400} for i, p in enumerate(prompts)]
    (tmp_path / "math8k.json").write_text(json.dumps(prompts))
    (tmp_path / "scores.json").write_text(json.dumps(scores))
    out = tmp_path / "out"
    cmd = [sys.executable, "lim_selection.py", "--scores_path", tmp_path / "scores.json", "--original_prompts_path",
           tmp_path / "math8k.json", "--output_path", out / "lim" / "limr.json", "--no_plots"]  # fmt: skip
    r = subprocess.run([str(c) for c in cmd], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    args, out_text = dry("train_limr.sh", OUT=out)
    assert args.data.prompt_dataset == str(out / "limr" / "prompts.full_batches.jsonl")  # whole batches of ...
    assert f"of the 160 prompts of {out / 'lim' / 'limr.jsonl'}" in out_text  # ... the 0.6 .. 0.9975 that pass θ


# ---- The reward server, Ray and the node roles --------------------------------------------------------------------


def test_head_node_commands(data, tmp_path):
    r = dry_run(data, tmp_path)  # PRESET=paper, NODE_RANK 0
    assert r.returncode == 0, r.stderr
    server = command(r.stdout, "+ python3 train/reward_server.py")[1:]
    run_dir = data / "out" / "math8k"
    assert server == [
        "train/reward_server.py", "--host", "0.0.0.0", "--port", "5000",  # every node's vLLM engines call it
        "--rollout_log", str(run_dir / "rollouts.jsonl"), "--samples_per_step", "8192",  # 1,024 prompts x 8
        "--samples_per_epoch", "68184",  # 8,523 prompts x 8: steps restart each pass, as OpenRLHF's global_step
        "--eval_log", str(run_dir / "rollouts.eval.jsonl"), "--grader", "default",
        f">{run_dir}/reward_server.log", "2>&1", "&",
    ]  # fmt: skip
    assert command(r.stdout, "+ ray start")[1:] == [
        "start",
        "--head",
        "--port=6379",
        "--num-gpus=8",
        "--disable-usage-stats",
    ]
    order = [r.stdout.index(s) for s in ("reward_server.py", "/health", "ray start", "16 GPUs", TRAIN_CMD, "ray stop")]
    assert order == sorted(order)  # server, its health, Ray, all GPUs, training, then the EXIT trap
    assert '+ kill "$REWARD_PID"' in r.stdout
    assert not (tmp_path / "stub.log").exists()  # nothing was run: no ray, python3 or nvidia-smi


def test_single_node_server_binds_loopback(dry):
    args, out = dry(PRESET="node")
    assert args.reward.remote_url == ["http://127.0.0.1:5000/get_reward"]
    assert "--host 127.0.0.1" in out and "GPUs (at most" not in out  # one node: no wait for others


@pytest.mark.parametrize("grader", ["default", "limr"])
def test_grader_passes_through(data, tmp_path, grader):
    r = dry_run(data, tmp_path, GRADER=grader)
    assert command(r.stdout, "+ python3 train/reward_server.py")[-4:-3] == [grader]


def test_reward_token_goes_to_the_server_and_the_url_query(data, tmp_path):
    r = dry_run(data, tmp_path, REWARD_TOKEN="s3cret")
    assert r.returncode == 0 and "s3cret" not in r.stdout + r.stderr  # masked in what is printed
    assert "--token $REWARD_TOKEN" in r.stdout  # shown as the variable that holds it
    assert "/get_reward\\?token=$REWARD_TOKEN" in r.stdout  # the only way to send it: no headers in 0.11.2


@pytest.mark.parametrize("token", ["a,b", "a+b", "a&b", "a#b", "a%2Cb", "a b", "a/b", "a?b", "é"])
def test_a_token_that_would_change_the_url_is_refused(data, tmp_path, token):
    r = dry_run(data, tmp_path, REWARD_TOKEN=token)
    assert r.returncode == 2 and r.stderr.count("error:") == 1 and "only letters, digits, _ and -" in r.stderr
    assert token not in r.stderr + r.stdout  # the refusal does not print the secret either


def test_wandb_key_is_checked_on_every_node_before_training(data, tmp_path):
    out = dry_run(data, tmp_path, WANDB_API_KEY="k").stdout  # paper preset: 2 nodes
    assert out.index("every node's Ray has WANDB_API_KEY") < out.index(TRAIN_CMD)
    assert "WANDB_API_KEY" not in dry_run(data, tmp_path / "off").stdout  # no key: no wandb, no check
    assert "every node's Ray" not in dry_run(data, tmp_path / "one", WANDB_API_KEY="k", PRESET="node").stdout


@pytest.mark.parametrize("rank_var", ["NODE_RANK", "PET_NODE_RANK"])  # the release read torchrun's PET_NODE_RANK
def test_worker_node_joins_the_head(data, tmp_path, rank_var):
    r = dry_run(data, tmp_path, **{rank_var: 1, "MASTER_ADDR": "10.1.2.3"})
    assert r.returncode == 0, r.stderr
    assert command(r.stdout, "+ ray start")[1:] == [
        "start", "--address=10.1.2.3:6379", "--num-gpus=8", "--disable-usage-stats", "--block",
    ]  # fmt: skip
    assert "reward_server" not in r.stdout and TRAIN_CMD not in r.stdout  # only the head serves and trains


@pytest.mark.parametrize(
    "env, message",
    [
        ({"NODE_RANK": 1}, "MASTER_ADDR"),  # a worker must know the head
        ({"NODE_RANK": 2, "MASTER_ADDR": "h"}, "NODE_RANK 2 is not below the 2 node"),  # paper has 2 nodes
        ({"NODE_RANK": 1, "PRESET": "node", "MASTER_ADDR": "h"}, "not below the 1 node"),  # node is one node
        ({"PRESET": "cluster"}, "PRESET must be paper, node, single or smoke"),
        ({"GRADER": "strict"}, "GRADER must be default or limr"),
        ({"ACTOR_LR": "5e-7x"}, "ACTOR_LR must be a number"),
        ({"TRAIN_BATCH_SIZE": "256.0"}, "TRAIN_BATCH_SIZE must be a whole number"),
        ({"TRAIN_STEPS": "0"}, "TRAIN_STEPS must be at least 1"),
        ({"MATH8K_PROMPTS": "/nonexistent/math8k.jsonl"}, "not found: make it with: python data/prepare.py"),
        ({"VALIDATION": "/nonexistent/v.jsonl"}, "v.jsonl not found: make it with: python data/prepare.py"),
    ],
)
def test_bad_settings_stop_with_one_error_line(data, tmp_path, env, message):
    r = dry_run(data, tmp_path, **env)
    assert r.returncode == 2
    assert r.stderr.count("error:") == 1 and message in r.stderr, r.stderr
    assert TRAIN_CMD not in r.stdout


def test_missing_selection_names_the_command_that_makes_it(data, tmp_path):
    r = dry_run(data, tmp_path, "train_limr.sh", OUT=tmp_path / "empty")
    assert r.returncode == 2 and "limr.jsonl not found: make it with: python lim_selection.py" in r.stderr


def test_a_prompt_json_instead_of_jsonl_is_refused(data, tmp_path):
    r = dry_run(data, tmp_path, MATH8K_PROMPTS=data / "math8k.json")  # the paper's format, not OpenRLHF's
    assert r.returncode == 2 and "is not an OpenRLHF prompt dataset" in r.stderr


# ---- Start-up on a cluster: DeepSpeed's CUDA check, whole batches, the preflight ------------------------------


@pytest.mark.parametrize("script", RUNS)
@pytest.mark.parametrize("preset, rank", [("paper", 0), ("paper", 1), ("node", 0), ("single", 0)])
def test_ds_skip_cuda_check_reaches_every_ray_process(data, tmp_path, script, preset, rank):
    """--ds.adam_offload builds DeepSpeed's CPU Adam in the Ray actors: DS_SKIP_CUDA_CHECK=1 is exported before the
    `ray start` of the head and of every worker, so every process Ray starts on the node inherits it."""
    r = dry_run(data, tmp_path, script, PRESET=preset, NODE_RANK=rank, MASTER_ADDR="10.0.0.1")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert out.count("+ export DS_SKIP_CUDA_CHECK=1") == 1
    assert out.index("+ export DS_SKIP_CUDA_CHECK=1") < out.index("+ ray start")


def test_a_cluster_named_by_ray_address_is_told_to_export_it(data, tmp_path):
    out = dry_run(data, tmp_path, RAY_ADDRESS="10.0.0.9:6379").stdout
    assert "+ ray start" not in out and "+ export DS_SKIP_CUDA_CHECK=1" not in out  # its nodes were started elsewhere
    assert "needs DS_SKIP_CUDA_CHECK=1 exported before its ray start" in out


@pytest.mark.parametrize("script", [s for s in RUNS if s != "train_math.8k.sh"])
@pytest.mark.parametrize("preset", PRESETS)
def test_stage2_runs_train_on_whole_batches_only(dry, data, tmp_path, script, preset):
    """LIMR, RAND and LINEAR: one episode over a file of 189 x 1,024 rows from successive seeded shuffles of the
    subset, which the dry run names and prints the command for; running that command writes it."""
    args, out = dry(script, PRESET=preset)
    run, var, rows = RUNS[script]
    subset = data / "out" / "lim" / f"{run}.jsonl"
    target = data / "out" / run / "prompts.full_batches.jsonl"
    assert args.data.prompt_dataset == str(target) and args.train.num_episodes == 1
    assert f"# full batches: every step 1024 prompts; {target} holds 193536 rows" in out
    assert "each episode ends with a step" not in out and "LIM after this run" not in out
    cmd = command(out, "+ python3 -m limr.full_batches")
    assert cmd[cmd.index("--prompts") + 1] == str(subset)
    written = tmp_path / "fb.jsonl"
    cmd[cmd.index("--output") + 1] = str(written)  # the run folder is shared by the other tests
    r = subprocess.run([sys.executable, *cmd[1:]], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = written.read_text().splitlines()
    assert len(lines) % args.rollout.batch_size == 0 and len(lines) // args.rollout.batch_size >= 189
    source = subset.read_text().splitlines()
    counts = {line: lines.count(line) for line in set(lines)} if rows < 200 else None
    assert set(lines) == set(source)  # every prompt, nothing else ...
    first = lines[:rows]  # ... the first shuffle holds each prompt once
    assert sorted(first) == sorted(source) and first != source
    assert counts is None or max(counts.values()) - min(counts.values()) <= 1


def test_full_keeps_its_passes(dry, data):
    args, out = dry("train_math.8k.sh")
    assert args.data.prompt_dataset == str(data / "math8k.jsonl") and args.train.num_episodes == 21
    assert "limr.full_batches" not in out and "# full batches" not in out
    args, _ = dry("train_limr.sh", FULL_BATCHES=0)  # and a stage-2 run can have them back
    assert args.data.prompt_dataset == str(data / "out" / "lim" / "limr.jsonl")


@pytest.mark.parametrize("rank", [0, 1])
def test_the_preflight_runs_first_on_every_node(data, tmp_path, rank):
    out = dry_run(data, tmp_path, NODE_RANK=rank, MASTER_ADDR="10.0.0.1").stdout
    pre = command(out, "+ env PRESET=paper")
    assert pre[-2:] == ["scripts/preflight.sh"] or pre[-1] == "scripts/preflight.sh"
    assert f"NODE_RANK={rank}" in pre and "MASTER_ADDR=10.0.0.1" in pre
    assert out.index("scripts/preflight.sh") < out.index("+ ray start")  # before anything starts


def test_a_failed_preflight_stops_the_launch(data, tmp_path):
    """A real launch with stand-ins for nvidia-smi and ray: the real preflight fails (no driver), nothing starts."""
    stubs = {"ray": RECORDER, "nvidia-smi": nvidia_smi(8), "python3": FAKE_PYTHON}
    path = tools_only(tmp_path, stubs)
    Path(path, "env").symlink_to(shutil.which("env"))
    env = launch_env(data, tmp_path, stubs={}, PRESET="node", SKIP_PREFLIGHT=0, TRAIN_RC=0)
    env["PATH"] = path
    r = run_script("train_math.8k.sh", env)
    assert r.returncode == 2 and "scripts/preflight.sh failed on node 0" in r.stderr, r.stderr
    assert "FAIL NVIDIA driver" in r.stdout and r.stderr.count("error:") == 1
    assert not any(c.startswith("ray") for c in (tmp_path / "stub.log").read_text().splitlines())
    assert not (tmp_path / "out" / "math8k" / "rollouts.jsonl").exists()


# ---- Real runs: prerequisites, and one launch with stand-ins ---------------------------------------------------

TOOLS = ("bash", "dirname", "grep", "awk", "mkdir", "sleep", "cat", "basename")


def tools_only(tmp_path: Path, stubs: dict[str, str]) -> str:
    """A PATH holding the basic tools the scripts use and the given stubs, and nothing else."""
    bin_dir = stub_bin(tmp_path / "bin", stubs)
    for tool in TOOLS:
        if not (bin_dir / tool).exists():
            (bin_dir / tool).symlink_to(shutil.which(tool))
    return str(bin_dir)


@pytest.mark.parametrize(
    "stubs, model, message",
    [
        ({"ray": RECORDER}, "ok", "no NVIDIA GPU here"),  # no nvidia-smi at all
        ({"ray": RECORDER, "nvidia-smi": nvidia_smi(4)}, "ok", "needs 8 GPU(s) per node, nvidia-smi lists 4"),
        ({"nvidia-smi": nvidia_smi(8)}, "ok", "ray not found"),
        ({"ray": RECORDER, "nvidia-smi": nvidia_smi(8)}, "missing", "not in the Hugging Face cache"),
    ],
)
def test_real_run_stops_on_missing_prerequisites(data, tmp_path, stubs, model, message):
    (tmp_path / "ok").mkdir()
    (tmp_path / "ok" / "config.json").write_text("{}")
    env = script_env(data, tmp_path, tools_only(tmp_path, stubs), PRESET="node", MODEL=tmp_path / model)
    r = run_script("train_math.8k.sh", env)
    assert r.returncode == 2 and r.stderr.count("error:") == 1 and message in r.stderr, r.stderr
    assert not (tmp_path / "stub.log").exists()  # nothing was started


def test_model_found_in_the_hugging_face_cache(data, tmp_path):
    snapshot = tmp_path / "hf" / "hub" / "models--Qwen--Qwen2.5-Math-7B" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    path = tools_only(tmp_path, {"ray": RECORDER, "nvidia-smi": nvidia_smi(8)})
    # REWARD_WAIT_S is a hang guard only: the script polls until it sees the server has exited (an event)
    env = script_env(data, tmp_path, path, PRESET="node", HF_HOME=tmp_path / "hf", REWARD_WAIT_S=60, SKIP_PREFLIGHT=1)
    r = run_script("train_math.8k.sh", env)
    assert r.returncode == 2 and "Hugging Face cache" not in r.stderr  # past the model check ...
    assert "the reward server exited" in r.stderr  # ... to the reward server (no python3 on this PATH)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


FAKE_PYTHON = f"""#!{sys.executable}
# python3 for the launch tests: the OpenRLHF driver (a GPU program) records its command line, sends one graded
# sample to the reward server it was given, as OpenRLHF's client does, and exits with TRAIN_RC. Every other
# python3 call (the real reward server, the health check) runs the real interpreter.
import json, os, sys, urllib.request
argv = sys.argv[1:]
with open(os.environ["STUB_LOG"], "a") as f:
    f.write("python3 " + " ".join(argv) + "\\n")
if argv[:2] == ["-m", "openrlhf.cli.train_ppo_ray"]:
    url = argv[argv.index("--reward.remote_url") + 1]
    prompt = "<|im_start|>user\\nWhat is 1 + 1?<|im_end|>\\n<|im_start|>assistant\\n"
    body = {{"query": [prompt + "So $\\\\boxed{{2}}$.<|im_end|>"], "prompts": [prompt],
            "labels": ['{{"id":"q1","answer":"2","split":"train"}}']}}
    request = urllib.request.Request(url, json.dumps(body).encode(), {{"Content-Type": "application/json"}})
    no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({{}}))  # as OpenRLHF's aiohttp client
    reply = json.load(no_proxy.open(request, timeout=30))
    with open(os.environ["TRAIN_CALL"], "w") as f:
        json.dump({{"argv": argv[2:], "RAY_ADDRESS": os.environ.get("RAY_ADDRESS"), "reply": reply}}, f)
    sys.exit(int(os.environ["TRAIN_RC"]))
os.execv(sys.executable, [sys.executable] + argv)
"""


def launch_env(data, tmp_path, stubs, **env) -> dict:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    env = dict(MODEL=tmp_path / "model", OUT=tmp_path / "out", TRAIN_CALL=tmp_path / "train.json", **env)
    env.setdefault(
        "SKIP_PREFLIGHT", 1
    )  # its own tests: test_preflight.py, and test_a_failed_preflight_stops_the_launch
    return script_env(data, tmp_path, tools_only(tmp_path, stubs), **env)


@pytest.mark.parametrize("train_rc", [0, 3])
def test_launch_starts_server_and_ray_then_stops_both(data, tmp_path, train_rc):
    """A real launch of the node preset with the real reward server; ray, nvidia-smi and the driver stand in."""
    port = free_port()
    stubs = {"ray": RAY, "nvidia-smi": nvidia_smi(8), "python3": FAKE_PYTHON}
    dead = f"http://127.0.0.1:{free_port()}"  # a proxy that is not there: the health probe must not use it
    env = launch_env(data, tmp_path, stubs, PRESET="node", REWARD_PORT=port, TRAIN_RC=train_rc,
                     http_proxy=dead, HTTP_PROXY=dead)  # fmt: skip
    r = run_script("train_math.8k.sh", env)
    run_dir = tmp_path / "out" / "math8k"
    server_log = (run_dir / "reward_server.log").read_text()
    assert r.returncode == train_rc, r.stderr + server_log  # the driver's exit status is the script's

    calls = (tmp_path / "stub.log").read_text().splitlines()
    server = [c for c in calls if c.startswith("python3 train/reward_server.py")]
    assert server == [f"python3 train/reward_server.py --host 127.0.0.1 --port {port} --rollout_log "
                      f"{run_dir}/rollouts.jsonl --samples_per_step 8192 --samples_per_epoch 68184 --eval_log {run_dir}/rollouts.eval.jsonl "
                      "--grader default"]  # fmt: skip
    ray_calls = [c for c in calls if c.startswith("ray ")]
    assert ray_calls == [
        "ray start --head --port=6379 --num-gpus=8 --disable-usage-stats DS_SKIP_CUDA_CHECK=1",  # Ray inherits it
        "ray stop DS_SKIP_CUDA_CHECK=1",
    ]
    train = json.loads((tmp_path / "train.json").read_text())
    assert train["RAY_ADDRESS"] == "auto"  # the driver joins the cluster this script started
    assert train["reply"]["rewards"] == [1.0]  # the server graded the sample ...
    row = json.loads((run_dir / "rollouts.jsonl").read_text().splitlines()[0])
    assert (row["step"], row["id"], row["reward"]) == (1, "q1", 1.0)  # ... and logged it where LIM reads it
    assert "reward server: stopped after 1 requests" in server_log  # the EXIT trap stopped it cleanly
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0

    same = dict(PRESET="node", REWARD_PORT=port, OUT=tmp_path / "out", MODEL=tmp_path / "model")
    dry_out = dry_run(data, tmp_path / "dry", **same).stdout
    assert train_argv(dry_out) == train["argv"]  # the dry run printed exactly what ran


def test_launch_refuses_to_append_to_an_earlier_rollout_log(data, tmp_path):
    env = launch_env(
        data, tmp_path, {"ray": RECORDER, "nvidia-smi": nvidia_smi(8), "python3": RECORDER}, PRESET="node"
    )
    (tmp_path / "out" / "math8k").mkdir(parents=True)
    (tmp_path / "out" / "math8k" / "rollouts.jsonl").write_text('{"step": 1}\n')
    r = run_script("train_math.8k.sh", env)
    assert r.returncode == 2 and "rollouts.jsonl exists from an earlier run" in r.stderr
    assert not (tmp_path / "stub.log").exists()


def test_head_gives_up_when_the_other_node_never_joins(data, tmp_path):
    port = free_port()
    stubs = {"ray": RECORDER, "nvidia-smi": nvidia_smi(8), "python3": FAKE_PYTHON}
    env = launch_env(data, tmp_path, stubs, REWARD_PORT=port, RAY_WAIT_S=0, MASTER_ADDR="127.0.0.1", TRAIN_RC=0)
    r = run_script("train_math.8k.sh", env)  # PRESET=paper: 2 nodes, and the stand-in Ray has no GPUs
    assert r.returncode == 2 and "Ray has 0 of 16 GPUs" in r.stderr and "NODE_RANK=1" in r.stderr, r.stderr
    assert not (tmp_path / "train.json").exists()
    assert (tmp_path / "stub.log").read_text().splitlines()[-1] == "ray stop"  # still cleaned up
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0


def test_worker_gives_up_without_a_head(data, tmp_path):
    stubs = {"ray": RECORDER, "nvidia-smi": nvidia_smi(8)}
    env = launch_env(data, tmp_path, stubs, NODE_RANK=1, MASTER_ADDR="127.0.0.1", RAY_PORT=free_port(), RAY_WAIT_S=0)
    r = run_script("train_math.8k.sh", env)
    assert r.returncode == 2 and "no Ray head at 127.0.0.1" in r.stderr
    assert not (tmp_path / "stub.log").exists()


SRUN = (
    "#!/bin/bash\n# srun for the Slurm test: record the options, run the step here\n"
    'opts=(); while [[ $1 == --* ]]; do opts+=("$1"); shift; done\necho "srun ${opts[*]}" >>"$STUB_LOG"\nexec "$@"\n'
)
SCONTROL = '#!/bin/bash\nprintf "gpu-a\\ngpu-b\\n"\n'


def test_slurm_example_runs_the_head_and_a_worker(data, tmp_path):
    stubs = stub_bin(tmp_path / "slurm", {"srun": SRUN, "scontrol": SCONTROL})
    env = script_env(data, tmp_path, f"{stubs}:{os.environ['PATH']}", DRY_RUN=1, SLURM_SUBMIT_DIR=ROOT,
                     SLURM_JOB_NODELIST="gpu-[a-b]", SLURM_CPUS_ON_NODE=96, SLURM_GPUS_PER_NODE=8,
                     TRAIN_SCRIPT="scripts/train_limr.sh")  # fmt: skip
    r = subprocess.run(["bash", str(SCRIPTS / "slurm_example.sbatch")], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "--address=gpu-a:6379" in r.stdout  # node 1 joins the head on the first node
    assert "--reward.remote_url http://gpu-a:5000/get_reward" in r.stdout  # node 0 serves rewards to both
    assert train_argv(r.stdout)[train_argv(r.stdout).index("--ckpt.path") + 1].endswith("/limr/ckpt")
    # each step gets the node's GPUs and every core (CPU Adam), not srun's default single core
    steps = (tmp_path / "stub.log").read_text().splitlines()
    assert steps == [
        f"srun --nodes=1 --ntasks=1 --gpus-per-node=8 --cpus-per-task=96 --nodelist=gpu-{n}" for n in "ba"
    ]
    # the worker finished before the head started: the two outputs do not interleave
    assert r.stdout.index("--address=gpu-a:6379") < r.stdout.index("PRESET=paper on node 0")


# ---- Lint ----------------------------------------------------------------------------------------------------------

LIBRARY = SCRIPTS / "lib" / "launch.sh"  # sourced by train_common.sh: functions only
SHELL_FILES = sorted(SCRIPTS.glob("*.sh")) + [SCRIPTS / "slurm_example.sbatch", LIBRARY]


@pytest.mark.parametrize("path", SHELL_FILES, ids=lambda p: p.name)
def test_bash_syntax(path):
    r = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    text = path.read_text()
    assert text.startswith("#!/usr/bin/env bash\n#") or text.startswith("#!/bin/bash\n#")  # a run-command header
    assert ("set -euo pipefail" in text or path == LIBRARY) and "path/to" not in text


def test_the_launch_library_defines_functions_only():
    """Sourcing scripts/lib/launch.sh runs nothing and sets no variable; train_common.sh calls functions it defines."""
    probe = 'before=; before=$(compgen -v | sort); source "$1"; [[ $(compgen -v | sort) == "$before" ]] && declare -F'
    r = subprocess.run(["bash", "-c", probe, "probe", str(LIBRARY)], capture_output=True, text=True)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    defined = {line.split()[-1] for line in r.stdout.splitlines()}
    launch = (SCRIPTS / "train_common.sh").read_text().split("# ---- The launch ----")[1]
    called = {line.split()[0] for line in launch.splitlines() if line.strip()[:1].isalpha()} - {"if", "fi", "exit"}
    assert "join_head" in called and called <= defined and "apply_preset" in defined, called - defined


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
def test_shellcheck():
    r = subprocess.run(["shellcheck", "-x", *map(str, SHELL_FILES)], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout
