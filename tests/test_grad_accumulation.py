"""Gradient accumulation across PPO steps, replayed from DeepSpeed's counter and OpenRLHF's loss windows.

DeepSpeed 0.19.6 decides each optimizer boundary from a micro-step counter set to 0 once, in the engine's __init__
(runtime/engine.py, DeepSpeedEngine.__init__: `self.micro_steps = 0`), raised at the end of every `step()`
(`self.micro_steps += 1`) and never reset: `is_gradient_accumulation_boundary` is
`(self.micro_steps + 1) % self.gradient_accumulation_steps() == 0`. Every backward is scaled by 1 / gas
(`_scale_loss_by_gas`). OpenRLHF 0.11.2 calls `strategy.optimizer_step` (DeepSpeed's `step()`) after every
micro-batch (trainer/ray/ppo_actor.py, training_step) and normalises the loss in windows of gas micro-batches that
restart at every ppo_train call (utils/loss_utils.py, iter_grad_accum_global_norm, run here as installed), the last
window of a call holding what is left. DeepSpeed is not installed on the CPU: its three lines are replayed in
`Engine` below; OpenRLHF's windows and `aggregate_loss` are its own code.

On `paper`, FULL's pass ends with a partial step whose 165 micro-batches per actor rank are 10 x 16 + 5, so the
counter's phase moves by 5 each pass and the optimizer steps straddle two rollouts in most PPO steps.
"""

import math
from types import SimpleNamespace
from typing import Optional

import pytest
import test_even_split as split
import test_train_scripts as scripts
import torch
from openrlhf.utils.loss_utils import iter_grad_accum_global_norm

data, dry, openrlhf_main, prompt_file = scripts.data, scripts.dry, scripts.openrlhf_main, split.prompt_file
# models/loss.py, aggregate_loss, compiled from the installed file (its package imports flash_attn, absent on a CPU)
aggregate_loss = scripts.openrlhf_source(
    "models/loss.py", ["aggregate_loss"], {"torch": torch, "Optional": Optional, "masked_mean": None}
)["aggregate_loss"]
TOKENS = 100  # response tokens per micro-batch: equal, so the weights below are exact ratios


class Engine:
    """DeepSpeedEngine's accumulation, as deepspeed 0.19.6 runtime/engine.py has it (see the module docstring)."""

    def __init__(self, gas: int):
        self.gas, self.micro_steps = gas, 0
        self.pending = []  # (ppo step, gradient weight) of each micro-batch since the last optimizer step
        self.optimizer_steps = []  # the same, per optimizer step taken

    def backward_and_step(self, ppo_step: int, weight: float):
        self.pending.append((ppo_step, weight))
        if (self.micro_steps + 1) % self.gas == 0:  # is_gradient_accumulation_boundary
            self.optimizer_steps.append(self.pending)
            self.pending = []
        self.micro_steps += 1  # end of step(): never reset


def replay(micro_batches_per_step: list[int], gas: int) -> Engine:
    engine = Engine(gas)
    strategy = SimpleNamespace()  # no torch.distributed here: dp_size 1, as on each rank alone
    for ppo_step, n in enumerate(micro_batches_per_step, 1):  # one ppo_train call per PPO step
        masks = (torch.ones(1, TOKENS) for _ in range(n))
        for mask, info in iter_grad_accum_global_norm(masks, strategy, gas, lambda m: m):
            loss = aggregate_loss(torch.ones_like(mask), mask, **info)  # 1 per token: the loss is the weight
            engine.backward_and_step(ppo_step, float(loss) / gas)  # DeepSpeed's _scale_loss_by_gas
    return engine


def schedule(args, rows: int, episodes: int) -> tuple[list[int], int]:
    """Train micro-batches per actor rank for every PPO step (OpenRLHF's split, deal and ppo_train loader), and gas."""
    ranks = split.groups(args)["actor"]
    per_step = {}
    steps = []
    for _ in range(episodes):
        for prompts in [args.rollout.batch_size] * (rows // args.rollout.batch_size) + (
            [rows % args.rollout.batch_size] if rows % args.rollout.batch_size else []
        ):
            if prompts not in per_step:
                (share,) = {s[2] for s in split.rank_shares(prompts * args.rollout.n_samples_per_prompt, ranks, args)}
                per_step[prompts] = share
            steps.append(per_step[prompts])
    strategy = SimpleNamespace(train_batch_size=args.train.batch_size, micro_train_batch_size=args.train.micro_batch_size,
                               ring_attn_size=1, ds_tensor_parallel_size=1, world_size=ranks)  # fmt: skip
    return steps, scripts.ACCUMULATION(self=strategy)


def summary(engine: Engine, ppo_steps: int) -> dict:
    mixing = [opt for opt in engine.optimizer_steps if len({p for p, _ in opt}) > 1]
    return {
        "mixed_ppo_steps": len(
            {opt[-1][0] for opt in mixing}
        ),  # PPO steps that take an optimizer step of two rollouts
        "rollouts_in_a_mix": len({s for opt in mixing for s, _ in opt}),  # the rollouts whose gradients are in one
        "max_gradient": max(sum(w for _, w in opt) for opt in engine.optimizer_steps),
        "max_token_weight": max(w for opt in engine.optimizer_steps for _, w in opt) * engine.gas,
        "never_applied": len(engine.pending),
        "ppo_steps": ppo_steps,
    }


def test_full_on_paper_mixes_rollouts_in_171_of_189_steps(dry, prompt_file):
    args, _ = dry("train_math.8k.sh", PRESET="paper", MATH8K_PROMPTS=prompt_file(8523))
    steps, gas = schedule(args, 8523, args.train.num_episodes)
    assert (len(steps), gas, steps[:9]) == (189, 16, [512] * 8 + [165])  # 165 = 10 x 16 + 5
    got = summary(replay(steps, gas), len(steps))
    assert got["mixed_ppo_steps"] == 171  # all but the first pass and the 17th (phase 5 x 16 = 80 = 0 mod 16)
    assert got["rollouts_in_a_mix"] == 173  # the same + the partial steps that end those two passes
    assert math.isclose(
        got["max_gradient"], 1 + 11 / 16, rel_tol=1e-6
    )  # a 5-micro-batch tail window (1) + 11 of the next (11/16)
    assert math.isclose(got["max_token_weight"], 16 / 5, rel_tol=1e-6)  # each token of a 5-micro-batch window: 3.2x
    assert got["never_applied"] == 5 * 21 % 16 == 9  # the run ends inside an accumulation


@pytest.mark.parametrize("preset", ["paper", "node", "single"])
def test_stage2_whole_batches_never_mix(dry, prompt_file, preset):
    args, _ = dry("train_limr.sh", PRESET=preset, LIMR_PROMPTS=prompt_file(1389))
    assert args.train.num_episodes == 1
    steps, gas = schedule(args, 189 * args.rollout.batch_size, 1)
    got = summary(replay(steps, gas), len(steps))
    assert got == {"mixed_ppo_steps": 0, "rollouts_in_a_mix": 0, "max_gradient": pytest.approx(1.0), "max_token_weight": pytest.approx(1.0),
                   "never_applied": 0, "ppo_steps": 189}  # fmt: skip
