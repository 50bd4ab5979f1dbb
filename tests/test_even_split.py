"""Every step of every run splits evenly over every model group's ranks, proved with OpenRLHF 0.11.2's own code.

An uneven split hangs a ZeRO-3 run: the ranks with more micro-batches wait in a collective for the others until
NCCL's 60-minute timeout. OpenRLHF's step path cannot be imported here (its modules import ray and vllm at the top),
so the functions that decide the split are taken from the installed source files and run as they are:

- `SamplesGenerator.generate_samples`, `_generate_vllm` and `_collect_prompt_batch` (trainer/ppo_utils/
  samples_generator.py): which prompts make a step, including a pass's last, partial one. Only the vLLM calls stand
  in (`_dispatch_prompts_to_vllm` returns n samples per prompt; ray.wait/get hand back what they were given).
- `RemoteExperienceMaker.split_rollout_samples` (trainer/ppo_utils/experience_maker.py): the micro-batches.
- `RayActorGroup.async_run_method_batch` (trainer/ray/launcher.py): how they are dealt to a group's ranks.

The prompt loader is the one `ppo_trainer.prepare_datasets` builds: `strategy.setup_dataloader(prompts_dataset, 1,
True, True, collate_fn)`, which without torch.distributed in the driver is a loader of batch 1, shuffle and drop_last
(torch's DataLoader here; the cluster's StatefulDataLoader subclasses it), collated by `PromptDataset.collate_fn`.
Episodes replay `PPOTrainer.fit` (ppo_trainer.py): generate_samples until it says exhausted, skipping empty
returns. Training replays `PolicyModelActor.ppo_train` (ppo_actor.py): a DataLoader over the rank's samples with
the train micro batch and drop_last. The settings come from the launcher's dry runs parsed by OpenRLHF's parser.
"""

import functools
import logging
import math
import typing
from pathlib import Path
from types import SimpleNamespace

import pytest
import test_train_scripts as scripts
import torch
from openrlhf.datasets import PromptDataset
from torch.utils.data import DataLoader
from tqdm import tqdm

from limr.dataset import write_prompt_files

PRESETS, dry_run = scripts.PRESETS, scripts.dry_run
openrlhf_source, method = scripts.openrlhf_source, scripts.method  # OpenRLHF's functions, from its installed files
data, dry, openrlhf_main = scripts.data, scripts.dry, scripts.openrlhf_main  # the launcher's dry runs, parsed


class Ray:
    """ray as the driver's code uses it here: objects are their own refs."""

    @staticmethod
    def wait(refs, num_returns=1, timeout=None):
        return refs[:num_returns], refs[num_returns:]

    @staticmethod
    def get(ref):
        return ref

    @staticmethod
    def put(obj):
        return obj


NAMESPACE = {
    "ray": Ray,
    "torch": torch,
    "tqdm": functools.partial(tqdm, disable=True),
    "logger": logging.getLogger(),
    "List": list,
    "Optional": typing.Optional,
    "Tuple": tuple,
    "Experience": object,
    "batch_vllm_engine_call": lambda engines, method, **kw: None,
}  # fmt: skip  (vLLM sleep/wake: no engines)
GENERATOR = openrlhf_source(
    "trainer/ppo_utils/samples_generator.py", ["_collect_prompt_batch", "SamplesGenerator"], dict(NAMESPACE)
)["SamplesGenerator"]
CONCAT = SimpleNamespace(concat_experiences=lambda samples, pad: samples)  # a micro-batch: its list of samples
SPLIT = method("trainer/ppo_utils/experience_maker.py", "RemoteExperienceMaker", "split_rollout_samples",
               {"Experience": CONCAT})  # fmt: skip
DEAL = method("trainer/ray/launcher.py", "RayActorGroup", "async_run_method_batch", {"ray": Ray})


class Generator(GENERATOR):
    """OpenRLHF's SamplesGenerator with vLLM replaced: each prompt comes back as n samples."""

    def _dispatch_prompts_to_vllm(self, prompts, labels, *, images=None, **kw):
        n = self.args.rollout.n_samples_per_prompt
        return [[{"prompt": p}] * n for p in prompts]  # one ref per prompt, as the real dispatch

    def _process_response_into_experience(self, response, **kw):
        return SimpleNamespace(prompt=response["prompt"])


def pass_steps(rows: int, args, episodes: int = 1) -> list[list[int]]:
    """Prompts per step of each episode, as PPOTrainer.fit drives OpenRLHF's SamplesGenerator over the prompts."""
    items = [("default", f"prompt {i}", f"label {i}", None) for i in range(rows)]
    loader = DataLoader(items, batch_size=1, shuffle=True, drop_last=True,
                        collate_fn=functools.partial(PromptDataset.collate_fn, None))  # fmt: skip
    generator = Generator(SimpleNamespace(args=args), loader, None, None, [])
    out = []
    for _ in range(episodes):
        steps = []
        while True:  # PPOTrainer.fit's loop
            samples, _, _, exhausted = generator.generate_samples()
            if samples:
                assert len(samples) % args.rollout.n_samples_per_prompt == 0
                steps.append(len(samples) // args.rollout.n_samples_per_prompt)
            if exhausted:
                break
        out.append(steps)
    return out


def rank_shares(samples: int, ranks: int, args) -> list[tuple[int, int, int]]:
    """(micro-batches, samples, train micro-batches) per rank of a group for one step, by OpenRLHF's own code."""
    maker = SimpleNamespace(args=args, tokenizer=SimpleNamespace(pad_token_id=0))
    micro_batches = SPLIT(maker, [SimpleNamespace() for _ in range(samples)])
    got = []
    handler = SimpleNamespace(execute_batch=SimpleNamespace(remote=lambda name, chunk, a, b: got.append(chunk)))
    group = SimpleNamespace(_actor_handlers=[handler] * ranks, duplicate_actors=1)
    DEAL(group, method_name="forward", experience=micro_batches)
    assert len(got) == ranks
    shares = []
    for chunk in got:
        n = sum(len(mb) for mb in chunk["experience"])
        train = len(DataLoader(range(n), batch_size=args.train.micro_batch_size, drop_last=True))  # ppo_train
        shares.append((len(chunk["experience"]), n, train))
    return shares


def splits_evenly(samples: int, ranks: int, args) -> bool:
    """Equal shares on every rank; fewer micro-batches than ranks makes async_run_method_batch raise (a crash)."""
    try:
        return len(set(rank_shares(samples, ranks, args))) == 1
    except ValueError as e:
        assert "Insufficient batch size" in str(e)
        return False


def groups(args) -> dict[str, int]:
    """Ranks per model group: RayActorGroup(num_nodes, num_gpus_per_node, ...) in cli/train_ppo_ray.py."""
    return {g: get.num_nodes * get.num_gpus_per_node for g, get in (("actor", args.actor), ("critic", args.critic),
                                                                     ("reference", args.ref))}  # fmt: skip


def assert_every_step_even(rows: int, args, out: str):
    (steps,) = pass_steps(rows, args)
    assert sum(steps) == rows and len(steps) == math.ceil(rows / args.rollout.batch_size)
    assert f"{rows} prompts = {len(steps)} steps per episode" in out  # the launcher's count is OpenRLHF's
    for prompts in set(steps):
        for group, ranks in groups(args).items():
            shares = rank_shares(prompts * args.rollout.n_samples_per_prompt, ranks, args)
            assert len(set(shares)) == 1, f"{rows} prompts, step of {prompts}: {group} ranks get {shares}"
    return steps


# ---- Every preset x run ---------------------------------------------------------------------------------------

RUN_ROWS = {
    "train_math.8k.sh": [8523],
    "train_limr.sh": [1389],
    "train_rand.sh": [1389],
    "train_linear.sh": [1138, 1160, 1189],
}  # fmt: skip  (the paper's LINEAR has 1,138-1,189 prompts)
VAR = {"train_math.8k.sh": "MATH8K_PROMPTS", "train_limr.sh": "LIMR_PROMPTS", "train_rand.sh": "RAND_PROMPTS",
       "train_linear.sh": "LINEAR_PROMPTS"}  # fmt: skip


@pytest.fixture(scope="session")
def prompt_file(tmp_path_factory):
    root = tmp_path_factory.mktemp("counts")

    def make(rows: int) -> Path:
        path = root / f"p{rows}.jsonl"
        if not path.exists():
            items = [{"id": f"q{i}", "prompt": f"What is {i}?", "answer": str(i)} for i in range(rows)]
            write_prompt_files(root / f"p{rows}.json", items)
        return path

    return make


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("script, rows", [(s, n) for s, counts in RUN_ROWS.items() for n in counts])
def test_every_step_of_every_run_splits_evenly(dry, prompt_file, script, rows, preset):
    # FULL_BATCHES=0: the stage-2 runs on their passes, as FULL runs (the default whole batches: test_train_scripts.py)
    args, out = dry(script, PRESET=preset, FULL_BATCHES=0, **{VAR[script]: prompt_file(rows)})
    steps = assert_every_step_even(rows, args, out)
    assert steps[-1] == rows % 1024 or steps[-1] == 1024  # the partial step is last, and it is even too
    assert f"rollout micro batch {args.rollout.micro_batch_size};" in out


def test_linear_every_count_in_the_papers_range(dry, prompt_file):
    """LINEAR's size is not fixed (1,138-1,189 in the paper): every third count, on the preset with the most ranks."""
    for rows in [*range(1138, 1190, 3), 1189]:
        args, out = dry("train_linear.sh", PRESET="node", FULL_BATCHES=0, LINEAR_PROMPTS=prompt_file(rows))
        assert_every_step_even(rows, args, out)


def test_episodes_restart_the_pass(dry, prompt_file):
    """A second episode is again ceil(rows / batch) steps with the partial one last (the iterator resets)."""
    args, _ = dry("train_limr.sh", PRESET="single", FULL_BATCHES=0, LIMR_PROMPTS=prompt_file(1389))
    assert pass_steps(1389, args, episodes=2) == [[1024, 365]] * 2


def test_stage2_runs_take_full_batches_only(dry, prompt_file, tmp_path):
    """The default stage-2 run: the file limr.full_batches writes, driven through OpenRLHF's SamplesGenerator in the one
    episode the launcher asks for, is 189 steps of 1,024 prompts, each split evenly."""
    from limr.full_batches import write_full_batches

    args, out = dry("train_limr.sh", PRESET="paper", LIMR_PROMPTS=prompt_file(1389))
    assert args.train.num_episodes == 1 and args.data.prompt_dataset.endswith("prompts.full_batches.jsonl")
    rows = write_full_batches(prompt_file(1389), tmp_path / "fb.jsonl", args.rollout.batch_size, 189, args.train.seed)
    assert pass_steps(rows, args) == [[1024] * 189]
    assert_every_step_even(rows, args, out)


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("script", ["train_math.8k.sh", "train_limr.sh"])
def test_the_partial_steps_note_counts_as_openrlhf_and_deepspeed(dry, prompt_file, script, preset):
    """The note on a pass's partial step: its train micro-batches per actor rank (OpenRLHF's split, then ppo_train's
    loader) against the micro-batches per optimizer step (DeepspeedStrategy.setup_distributed's accumulated_gradient)."""
    rows = RUN_ROWS[script][0]
    args, out = dry(script, PRESET=preset, FULL_BATCHES=0, **{VAR[script]: prompt_file(rows)})
    ranks = groups(args)["actor"]
    (train_micro,) = {share[2] for share in rank_shares(rows % 1024 * args.rollout.n_samples_per_prompt, ranks, args)}
    strategy = SimpleNamespace(train_batch_size=args.train.batch_size, micro_train_batch_size=args.train.micro_batch_size,
                               ring_attn_size=1, ds_tensor_parallel_size=1, world_size=ranks)  # fmt: skip
    accumulation = scripts.ACCUMULATION(self=strategy)
    whole, rest = divmod(train_micro, accumulation)
    note = f"each actor rank trains {train_micro} micro-batches = {whole} x {accumulation} + {rest};"
    assert (note in out) == (rest > 0), out
    assert f"# note: each episode ends with a step of {rows % 1024} prompts" in out


# ---- Refusals: what would hang today ------------------------------------------------------------------------------


def test_the_configuration_that_hangs_today_is_refused(data_paths):
    """FULL on the paper preset with the release's micro batch 4: step 9 deals 166/166/166/164 micro-batches."""
    args = SimpleNamespace(rollout=SimpleNamespace(micro_batch_size=4), train=SimpleNamespace(
        dynamic_batch_enable=False, micro_batch_size=4))  # fmt: skip
    shares = rank_shares(331 * 8, 4, args)
    assert [s[0] for s in shares] == [166, 166, 166, 164]  # OpenRLHF's own split: it would hang
    r = data_paths(ROLLOUT_MICRO_BATCH_SIZE=4)
    assert r.returncode == 2 and r.stderr.count("error:") == 1, r.stderr
    assert "ROLLOUT_MICRO_BATCH_SIZE=4 splits unevenly" in r.stderr and "664/664/664/656 samples" in r.stderr
    assert "use ROLLOUT_MICRO_BATCH_SIZE=2" in r.stderr  # the fix, named


@pytest.mark.parametrize(
    "env, message",
    [
        ({"ACTOR_GPUS": 3}, "no rollout micro batch splits evenly"),  # 8,192 samples over 3 ranks
        ({"PRESET": "node", "ROLLOUT_MICRO_BATCH_SIZE": 2}, "use ROLLOUT_MICRO_BATCH_SIZE=1"),  # 2,648 over 8 ranks
        ({"PRESET": "single", "TRAIN_BATCH_SIZE": 254}, "TRAIN_BATCH_SIZE=254 is not a multiple"),  # DeepSpeed
        ({"ROLLOUT_MICRO_BATCH_SIZE": "0"}, "auto or a whole number >= 1"),
    ],
)
def test_uneven_configurations_are_refused(data_paths, env, message):
    r = data_paths(**env)
    assert r.returncode == 2 and r.stderr.count("error:") == 1 and message in r.stderr, r.stderr


@pytest.mark.parametrize("rows", [1000, 1029, 1030, 1031, 1033, 2049, 4095])
@pytest.mark.parametrize("ranks", [2, 4, 8])
def test_launcher_accepts_exactly_what_openrlhf_splits_evenly(dry, prompt_file, data_paths, rows, ranks):
    """Any prompt count and rank count: a micro batch the launcher accepts splits evenly by OpenRLHF's code, and
    one it refuses does not."""
    layout = dict(
        PRESET="paper", ACTOR_GPUS=ranks, CRITIC_GPUS=ranks, REF_GPUS=ranks, MATH8K_PROMPTS=prompt_file(rows)
    )
    for micro in (1, 2, 3, 4):
        r = data_paths(ROLLOUT_MICRO_BATCH_SIZE=micro, **layout)
        args = SimpleNamespace(rollout=SimpleNamespace(micro_batch_size=micro), train=SimpleNamespace(
            dynamic_batch_enable=False, micro_batch_size=4))  # fmt: skip
        sizes = {1024 * 8, rows % 1024 * 8} - {0} if rows >= 1024 else {rows * 8}
        even = all(splits_evenly(s, ranks, args) for s in sizes)
        assert (r.returncode == 0) == even, (micro, r.stderr)
    args, out = dry(**layout)  # auto picks the largest that is even
    assert_every_step_even(rows, args, out)


@pytest.fixture
def data_paths(data, tmp_path):
    """A dry run of train_math.8k.sh with extra settings: its CompletedProcess."""
    return lambda **env: dry_run(data, tmp_path, **env)


# ---- The smoke run: its arithmetic, its even split, and LIM on a log of its shape -----------------------------------


def test_smoke_run(data, tmp_path, openrlhf_main):
    import json
    import shlex
    import subprocess
    import sys

    stubs = scripts.stub_bin(tmp_path / "bin", {"ray": scripts.RECORDER, "python3": scripts.RECORDER})
    out = tmp_path / "out"
    env = scripts.script_env(data, tmp_path, f"{stubs}:/usr/bin:/bin", DRY_RUN=1, PYTHON=sys.executable, OUT=out,
                             MATH8K_JSON=data / "math8k.json", VALIDATION_JSON=data / "validation.json")  # fmt: skip
    r = subprocess.run(
        ["bash", str(scripts.SCRIPTS / "smoke.sh")], env=env, capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stderr
    args = scripts.openrlhf_args(openrlhf_main, scripts.train_argv(r.stdout))
    smoke = out / "smoke"
    assert args.data.prompt_dataset == str(smoke / "prompts.jsonl") and args.eval.dataset == str(
        smoke / "validation.jsonl"
    )
    assert [len(json.loads((smoke / f).read_text())) for f in ("prompts.json", "validation.json")] == [40, 16]
    assert args.actor.model_name_or_path == "Qwen/Qwen2.5-Math-1.5B" and args.actor.num_gpus_per_node == 1
    assert (args.rollout.batch_size, args.train.batch_size, args.train.num_episodes) == (16, 64, 2)
    assert (args.eval.steps, args.ckpt.save_steps, args.rollout.max_new_tokens) == (3, 3, 1024)  # eval + ckpt per pass
    assert args.reward.remote_url[0].endswith("/get_reward?token=$REWARD_TOKEN")  # the token is on (printed masked)
    steps = assert_every_step_even(40, args, r.stdout)
    assert steps == [16, 16, 8]  # a partial step in every pass
    server = scripts.command(r.stdout, "+ python3 train/reward_server.py")
    lines = [16 * 8, 16 * 8, 8 * 8]  # rollouts.jsonl lines per step of a pass
    assert server[server.index("--samples_per_step") + 1] == "128"
    assert server[server.index("--samples_per_epoch") + 1] == str(sum(lines))
    assert "--token" in server

    # LIM on a log of the smoke run's shape (the reward server's lines: step, epoch, id, reward, correct), as printed
    prompts = json.loads((smoke / "prompts.json").read_text())
    log = smoke / "math8k" / "rollouts.jsonl"
    log.parent.mkdir(parents=True)
    with log.open("w") as f:
        for step in range(1, 7):
            first = sum(lines[: (step - 1) % 3]) // 8
            for p in prompts[first : first + lines[(step - 1) % 3] // 8]:
                for k in range(8):
                    ok = k < step + int(p["id"][1:]) % 3
                    row = {
                        "step": step,
                        "epoch": (step - 1) // 3 + 1,  # a pass is 3 steps
                        "id": p["id"],
                        "reward": 1.0 if ok else -0.5,
                        "correct": ok,
                        "response_length": 9,
                    }
                    f.write(json.dumps(row) + "\n")
    (lim,) = [
        shlex.split(x[2:])
        for x in r.stdout.splitlines()
        if x.startswith(f"+ {shlex.quote(sys.executable)} lim_selection.py")
    ]
    done = subprocess.run(lim, cwd=scripts.ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (smoke / "lim" / "limr.jsonl").is_file()
    assert any(x.startswith("+ bash eval/eval.sh --run_path") and "--step latest" in x for x in r.stdout.splitlines())
