"""The single-machine RL engine: TRL's GRPOTrainer on the CPU, rewarded by the repo's reward server.

Each step takes B prompts and samples G responses per prompt (TRL's RepeatSampler: a seeded shuffle of the set per
pass, cut into steps, a short last step dropped, so a set that B divides takes len / B steps a pass). The samples go
to the reward server in OpenRLHF's request format — the query is the chat-templated prompt followed by the response
with its special tokens, the label `{"id","answer","split"}` — and the server grades them with the paper's reward
and writes the rollout log. Group-normalised advantages, one update per batch (on-policy), no KL term.

Checkpoints are saved as OpenRLHF's --save_hf_ckpt names them, <ckpt_dir>/global_step{N}_hf (model + tokenizer),
so eval/evaluate.py --run_path reads them unchanged.

`python mini/grpo.py JOB.json` (or `python -m mini.grpo JOB.json`) is one run as its own process, from a job file
that mini/run.py writes: the runs of stage 2 go side by side, one torch thread each.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

from transformers import TrainerCallback

from limr.dataset import encode_label
from mini.policy import build_tokenizer, messages, save
from mini.serve import post_samples, reward_server


class ServerReward:
    """A TRL reward function that asks the reward server, as OpenRLHF's vLLM engines do."""

    __name__ = "limr_reward"  # TRL names its reward metrics after the function

    def __init__(self, url: str, tokenizer):
        self.url, self.tokenizer = url, tokenizer

    def __call__(self, prompts, completions, completion_ids, label, **_) -> list[float]:
        texts = [self.tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
        # TRL's completion_ids end at (and keep) the first end-of-sequence token, as vLLM's output does
        responses = [self.tokenizer.decode(ids, skip_special_tokens=False) for ids in completion_ids]
        reply = post_samples(self.url, [t + r for t, r in zip(texts, responses, strict=True)], texts, list(label))
        return reply["rewards"]


class SaveHF(TrainerCallback):
    """global_step{N}_hf at step 0, every `every` steps and at the last step."""

    def __init__(self, tokenizer, ckpt_dir: Path, every: int | None):
        self.tokenizer, self.ckpt_dir, self.every = tokenizer, ckpt_dir, every

    def save(self, model, step: int) -> None:
        save(model, self.tokenizer, self.ckpt_dir / f"global_step{step}_hf")

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if self.every:
            self.save(model, 0)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        step = state.global_step
        if step == state.max_steps or (self.every and step % self.every == 0):
            self.save(model, step)


def optimizer(model, lr: float, gain_lr: float):
    """Adam with two rates: `gain_lr` for the final RMSNorm's gain, `lr` for every other weight.

    The final norm's gain multiplies every logit, so it acts as an inverse temperature; it carries the gradient's
    clearest signal (signal-to-noise per step ~2 against 0.1-0.5 for other tensors), and sharpening is most of what
    RL can do at this scale. Adam moves each weight by about its rate per step, so one rate for all either leaves the
    gain where it is (1e-4) or wrecks the rest with noise (1e-3). mini/README.md, "Choices", has the measurements.
    """
    import torch

    gain = model.get_decoder().norm.weight
    rest = [p for p in model.parameters() if p is not gain]
    groups = [{"params": [gain], "lr": gain_lr}, {"params": rest, "lr": lr}]
    opt = torch.optim.AdamW(groups, lr=lr, weight_decay=0.0)
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)  # constant rates


def train(model, tokenizer, items: list[dict], cfg: dict, steps: int, url: str, ckpt_dir: Path, seed: int,
          save_every: int | None) -> None:  # fmt: skip
    """`steps` GRPO updates on `items` (dicts with id, prompt, answer), rewards from the server at `url`."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    B, G = cfg["batch"], cfg["group"]
    if len(items) < B:
        raise ValueError(f"{len(items)} prompts cannot fill a step of {B}")
    rows = [{"prompt": messages(it["prompt"]), "label": encode_label(it["id"], it["answer"])} for it in items]
    args = GRPOConfig(
        output_dir=str(ckpt_dir.parent / "trl"),
        seed=seed,
        use_cpu=cfg["device"] == "cpu",
        bf16=False,
        gradient_checkpointing=False,
        max_steps=steps,
        per_device_train_batch_size=B * G,  # one optimizer step per generation batch: on-policy
        gradient_accumulation_steps=1,
        num_generations=G,
        max_completion_length=cfg["max_new"],
        temperature=cfg["temperature"],
        top_p=1.0,
        top_k=0,
        learning_rate=cfg["rl_lr"],
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=0.0,
        max_grad_norm=1.0,
        beta=0.0,
        save_strategy="no",
        logging_steps=max(1, steps // 4),
        report_to="none",
        dataloader_num_workers=0,
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=ServerReward(url, tokenizer),
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        callbacks=[SaveHF(tokenizer, ckpt_dir, save_every)],
        optimizers=optimizer(model, cfg["rl_lr"], cfg["gain_lr"]),
    )
    trainer.train()
    with contextlib.suppress(OSError):  # TRL's output_dir stays empty: checkpoints are SaveHF's
        Path(args.output_dir).rmdir()


def run_job(job: dict) -> None:
    """One run from a checkpoint: its reward server (the rollout log, steps of batch x group samples, passes of the
    prompts' whole steps), then `steps` GRPO updates, checkpoints in `ckpt_dir`."""
    from transformers import AutoModelForCausalLM

    from limr.dataset import load_prompts

    cfg, items = job["cfg"], load_prompts(job["prompts"])
    B, G = cfg["batch"], cfg["group"]
    model = AutoModelForCausalLM.from_pretrained(job["model"])
    with reward_server(Path(job["rollout_log"]), B * G, (len(items) // B) * B * G, job["workers"]) as url:
        train(model, build_tokenizer(), items, cfg, job["steps"], url, Path(job["ckpt_dir"]), job["seed"],
              job["save_every"])  # fmt: skip


def main(argv=None) -> int:
    import argparse

    from limr.jsonio import read_json

    p = argparse.ArgumentParser(description="One GRPO run from a job file that mini/run.py writes (jobs/<run>.json).")
    p.add_argument(
        "job", help="the job file: model, prompts, cfg, steps, seed, rollout_log, ckpt_dir, save_every, workers"
    )
    run_job(read_json(p.parse_args(argv).job))
    return 0


if __name__ == "__main__":
    sys.exit(main())
