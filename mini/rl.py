"""A minimal GRPO loop in plain torch (no TRL): sample G responses per prompt with `model.generate`, score them with
the paper's reward (`limr.reward.score`, in-process), log every sample to the rollout log (`limr.rollout_log`),
and take one policy-gradient step with group-normalised advantages (on-policy, so no ratio clipping or KL term).

Prompts are served as a stream of seeded per-epoch shuffles of the training set cut into batches of B prompts, so
one epoch is one pass over the set: for a set that B divides, ceil(len / B) steps, the steps `lim_selection.py`
expects with `--steps_per_epoch`. Evaluation is greedy decoding graded by `limr.pool.GradingPool` with
`check_format=False` (answers only), as `eval/evaluate.py` grades.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch
from tqdm import tqdm

from limr.pool import Graded
from limr.reward import EOS_MARKERS, score
from limr.rollout_log import RolloutLog, log_row, step_of
from mini.policy import prompt_ids, save


def batches(items: list[dict], batch: int, seed: int):
    """Endless batches: epoch e is items shuffled with Random(seed, e), cut into `batch`-sized pieces
    (a last partial piece is a short step, as in OpenRLHF)."""
    epoch = 0
    while True:
        order = list(items)
        random.Random(f"{seed}-{epoch}").shuffle(order)
        for i in range(0, len(order), batch):
            yield epoch, order[i : i + batch]
        epoch += 1


@torch.no_grad()
def generate(model, tokenizer, prompts: list[list[int]], n: int, max_new: int, greedy: bool, temperature: float = 1.0):
    """n continuations per prompt -> (sequences [P*n, L], prompt width, texts, ended-at-eos flags)."""
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    width = max(map(len, prompts))
    ids = torch.full((len(prompts), width), pad)
    mask = torch.zeros_like(ids)
    for i, p in enumerate(prompts):
        ids[i, width - len(p) :] = torch.tensor(p)
        mask[i, width - len(p) :] = 1
    ids, mask = ids.repeat_interleave(n, 0), mask.repeat_interleave(n, 0)
    kw = dict(do_sample=False) if greedy else dict(do_sample=True, temperature=temperature, top_k=0, top_p=1.0)
    out = model.generate(
        input_ids=ids, attention_mask=mask, max_new_tokens=max_new, eos_token_id=eos, pad_token_id=pad, **kw
    )
    texts, ended = [], []
    for row in out[:, width:].tolist():
        end = row.index(eos) if eos in row else None
        kept = row if end is None else row[:end]
        # the reward's rule 1 needs the end-of-turn marker in the text, as vLLM's output would carry it
        texts.append(tokenizer.decode(kept, skip_special_tokens=True) + ("" if end is None else EOS_MARKERS[0]))
        ended.append(end is not None)
    return out, mask, width, texts, ended


def response_logprobs(model, seqs, prompt_mask, width: int, eos: int):
    """Sum of log-probabilities of each response's tokens (up to and including its eos), and token counts."""
    resp = seqs[:, width:]
    after_eos = (resp == eos).long().cumsum(1) - (resp == eos).long()  # 0 up to and including the first eos
    resp_mask = (after_eos == 0).long()
    mask = torch.cat([prompt_mask, resp_mask], 1)
    pos = (mask.cumsum(1) - 1).clamp(min=0)
    logits = model(input_ids=seqs, attention_mask=mask, position_ids=pos).logits[:, width - 1 : -1]
    logp = torch.log_softmax(logits.float(), -1).gather(-1, resp.unsqueeze(-1)).squeeze(-1)
    return (logp * resp_mask).sum(1), resp_mask.sum(1)


def grpo(model, tokenizer, items: list[dict], cfg: dict, steps: int, log_path: Path, ckpt_dir: Path, seed: int,
         desc: str, on_eval=None) -> list[dict]:  # fmt: skip
    """`steps` GRPO updates over `items`; every sample goes to the rollout log at `log_path`. At step 0, every
    cfg["eval_every"] steps and the last, a checkpoint global_step{N}_hf is saved and `on_eval(step, path)` called.
    Returns per-step stats."""
    B, G = cfg["batch"], cfg["group"]
    per_epoch = len(items) * G if len(items) % B == 0 else None
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["rl_lr"], weight_decay=0.0)
    cache = {it["id"]: prompt_ids(tokenizer, it["prompt"]) for it in items}
    log = RolloutLog(log_path)
    if log.lines:
        log.close()
        raise RuntimeError(f"{log_path}: exists and is not empty; use a fresh output folder")
    stats, index = [], 0

    def checkpoint(step: int) -> None:
        path = save(model, tokenizer, ckpt_dir / f"global_step{step}_hf")
        if on_eval is not None:
            on_eval(step, path)

    torch.manual_seed(seed)
    checkpoint(0)
    stream = batches(items, B, seed)
    try:
        for step in tqdm(range(1, steps + 1), desc=desc, unit="step"):
            epoch, batch = next(stream)
            model.eval()
            seqs, pmask, width, texts, _ = generate(
                model, tokenizer, [cache[it["id"]] for it in batch], G, cfg["max_new"], False, cfg["temperature"]
            )
            rewards = []
            for k, text in enumerate(texts):
                it = batch[k // G]
                s = score(text, it["answer"])
                graded = Graded(s.reward, s.correct, s.extracted, s.format_error, 0.0)
                assert step_of(index, B * G, per_epoch) == step or per_epoch is None
                log.write(log_row(step, it["id"], graded, len(text)))
                index += 1
                rewards.append(s.reward)
            r = torch.tensor(rewards).view(len(batch), G)
            adv = ((r - r.mean(1, keepdim=True)) / (r.std(1, keepdim=True) + 1e-4)).view(-1)
            model.train()
            logp, ntok = response_logprobs(model, seqs, pmask, width, tokenizer.eos_token_id)
            loss = -(adv * logp).sum() / ntok.sum().clamp(min=1)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            model.eval()
            stats.append(
                {"step": step, "epoch": epoch, "reward": r.mean().item(), "acc": (r == 1).float().mean().item()}
            )
            if step % cfg["eval_every"] == 0 or step == steps:
                checkpoint(step)
    finally:
        log.close()
    return stats


def evaluate(model_path: Path, tokenizer, test: list[dict], pool, max_new: int, batch: int = 64) -> dict:
    """Greedy answers on the held-out set, graded on the answer alone (check_format=False pool)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_path).eval()
    texts = []
    for i in range(0, len(test), batch):
        chunk = test[i : i + batch]
        texts += generate(model, tokenizer, [prompt_ids(tokenizer, it["prompt"]) for it in chunk], 1, max_new, True)[3]
    graded = pool.map([(t, it["answer"]) for t, it in zip(texts, test, strict=True)])
    rows = [
        {"id": it["id"], "level": it["level"], "response": t, "extracted": g.extracted, "correct": g.correct}
        for it, t, g in zip(test, texts, graded, strict=True)
    ]
    return {"accuracy": sum(r["correct"] for r in rows) / len(rows), "rows": rows}


def write_jsonl(path: Path, rows: list[dict]) -> None:
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
