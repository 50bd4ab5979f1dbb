"""The miniature loop's parts, quickly: the task family, the tokenizer's round trip through a checkpoint, the
reward-server hand-off from TRL's reward-function interface, and determinism of the warm-up and of GRPO."""

from __future__ import annotations

import json
import random
import re
import sys
from pathlib import Path

import pytest

pytest.importorskip("trl")

from limr.dataset import encode_label  # noqa: E402
from limr.paper import SYSTEM_PROMPT  # noqa: E402
from limr.reward import EOS_MARKERS  # noqa: E402
from mini import tasks  # noqa: E402
from mini.grpo import ServerReward, optimizer, train  # noqa: E402
from mini.policy import build_model, build_tokenizer, messages, prompt_ids, save, sft  # noqa: E402
from mini.serve import post_samples, reward_server  # noqa: E402

STEP_RE = re.compile(r"(\d+)([+*-])(\d+)(?:([+-])(\d+))?(?:-(\d+))?=(\d+)\.")


def check_step(m: re.Match) -> bool:
    """One written step `a op b [op c] [- d] = r`, computed with ints."""
    a, op, b, op2, c, d, r = m.groups()
    value = {"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b)}[op]
    if op2:
        value = value + int(c) if op2 == "+" else value - int(c)
    if d:
        value -= int(d)
    return value == int(r)


def test_worked_solutions_are_right_and_end_in_the_answer():
    rng = random.Random(0)
    for level in tasks.LEVELS:
        for _ in range(500):
            question, solution, answer = tasks.make_problem(rng, level)
            steps = list(STEP_RE.finditer(solution))
            assert len(steps) == 2 and all(check_step(m) for m in steps), solution
            assert solution.endswith(f"\\boxed{{{answer}}}")
            a, op, b = re.fullmatch(r"Compute (\d+)([+*-])(\d+)\.", question).groups()
            assert int(answer) == {"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b)}[op]
    # the module docstring's examples
    assert tasks.add_steps(65, 8) == "5+8=13. 6+0+1=7." and tasks.add_steps(47, 38) == "7+8=15. 4+3+1=8."
    assert tasks.sub_steps(83, 47) == "13-7=6. 8-1-4=3." and tasks.mul_steps(7, 38) == "7*8=56. 7*3+5=26."


def test_splits_are_seeded_disjoint_and_graded():
    splits = tasks.make_splits(64, 48, 32, 200, seed=3)
    assert splits == tasks.make_splits(64, 48, 32, 200, seed=3)
    assert splits.pool != tasks.make_splits(64, 48, 32, 200, seed=4).pool
    keys = {name: {tasks.problem_key(it["prompt"]) for it in items} for name, items in splits._asdict().items()}
    for a, b in [
        ("pool", "val"),
        ("pool", "test"),
        ("val", "test"),
        ("pool", "warm"),
        ("val", "warm"),
        ("test", "warm"),
    ]:
        assert keys[a].isdisjoint(keys[b]), (a, b)
    assert [p["level"] for p in splits.pool[:8]] == [1, 2, 3, 4, 1, 2, 3, 4]
    assert len({p["id"] for p in splits.pool}) == 64 and len(splits.val) == 48 and len(splits.test) == 32


def test_a_commuted_twin_is_the_same_problem():
    """Issue 21: `a+b` and `b+a` were two problems, so held-out questions had their twin in the warm-up set."""
    assert tasks.problem_key("Compute 47+38.") == tasks.problem_key("Compute 38+47.")
    assert tasks.problem_key("Compute 7*38.") == tasks.problem_key("Compute 38*7.")
    assert tasks.problem_key("Compute 83-47.") != tasks.problem_key("Compute 47-83.")
    with pytest.raises(ValueError):
        tasks.problem_key("Compute 4/2.")
    # at the default size no held-out question has its commuted twin among the warm-up's problems (26-29 a seed had)
    splits = tasks.make_splits(512, 500, 1000, 4000, seed=0)
    twins = {f"Compute {b}+{a}." for a, b in (re.fullmatch(r"Compute (\d+)\+(\d+)\.", t["prompt"]).groups()
                                             for t in splits.test if "+" in t["prompt"])}  # fmt: skip
    assert twins and twins.isdisjoint(w["prompt"] for w in splits.warm)


def test_tokenizer_survives_a_checkpoint(tmp_path):
    """AutoTokenizer loads a qwen2 checkpoint's tokenizer as Qwen2Tokenizer: the same ids and text must come back."""
    from transformers import AutoTokenizer

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "eval"))
    from evaluate import chat_prompt

    tok = build_tokenizer()
    save(build_model(tok, 16, 1, 2, 0), tok, tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    text = "<|im_start|>user\nCompute 47+38.<|im_end|>\n 7+8=15. 4+3+1=8. \\boxed{85}<|im_end|>"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert (
        loaded(text, add_special_tokens=False)["input_ids"] == ids and len(ids) == len(text) - 11 - 2 * 9 - 4
    )  # a token per character, the specials and the role header "user\n" one each
    assert loaded.decode(ids) == text and tok.decode(ids) == text
    assert loaded.apply_chat_template(messages("Compute 1+2."), tokenize=False, add_generation_prompt=True) == (
        tok.apply_chat_template(messages("Compute 1+2."), tokenize=False, add_generation_prompt=True)
    )
    assert (loaded.eos_token, loaded.pad_token) == ("<|im_end|>", "<|endoftext|>")
    # the harness's prompt (eval/evaluate.py, from the loaded checkpoint) is the one training saw, 25 tokens: the
    # role headers and the paper's system prompt one token each, the question a token per character
    prompt = prompt_ids(tok, "Compute 47+38.")
    assert chat_prompt(loaded, "Compute 47+38.") == prompt and tok.convert_ids_to_tokens(prompt) == [
        "<|im_start|>", "system\n", SYSTEM_PROMPT, "<|im_end|>", "\u010a", "<|im_start|>", "user\n",
        *"Compute\u0120" "47+38.", "<|im_end|>", "\u010a", "<|im_start|>", "assistant\n"]  # fmt: skip
    assert tok(f"x {SYSTEM_PROMPT[:-1]}", add_special_tokens=False)["input_ids"] == [
        tok.convert_tokens_to_ids(c) for c in f"x\u0120{SYSTEM_PROMPT[:-1]}".replace(" ", "\u0120")
    ]  # only the whole string is packed: a question quoting part of it stays a token per character


def test_server_reward_sends_openrlhf_queries_and_the_server_logs_them(tmp_path):
    tok = build_tokenizer()
    answers = ["\\boxed{5}", "\\boxed{6}", "no box at all", "\\boxed{5} cut off"]
    completion_ids = [tok(a + EOS_MARKERS[0], add_special_tokens=False)["input_ids"] for a in answers[:3]]
    completion_ids.append(tok(answers[3], add_special_tokens=False)["input_ids"])  # no end of turn: truncated
    log = tmp_path / "rollouts.jsonl"
    with reward_server(log, samples_per_step=2, samples_per_epoch=4) as url:
        reward = ServerReward(url, tok)
        prompts = [messages("Compute 2+3.")] * 4
        labels = [encode_label("q1", "5")] * 2 + [encode_label("q2", "5")] * 2
        assert reward(prompts, [None] * 4, completion_ids, labels, trainer_state=None) == [1.0, -0.5, -1.0, -1.0]
        with pytest.raises(RuntimeError, match="answered 422: .*must be as long as each other"):
            post_samples(url, ["x"], ["x", "y"], ["5"])
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(r["step"], r["id"], r["reward"], r["format_error"]) for r in rows] == [
        (1, "q1", 1.0, None), (1, "q1", -0.5, None), (2, "q2", -1.0, "no_box"), (2, "q2", -1.0, "truncated")]  # fmt: skip
    assert "stopped after 1 requests" in log.with_suffix(".server.log").read_text()


def test_a_server_that_cannot_start_is_an_error(tmp_path):
    (tmp_path / "rollouts.jsonl").write_text("not a log\n")
    with pytest.raises(RuntimeError, match="did not start"):
        with reward_server(tmp_path / "rollouts.jsonl", samples_per_step=2, samples_per_epoch=4):
            pass


CFG = dict(batch=4, group=4, max_new=12, temperature=1.0, rl_lr=1e-3, gain_lr=1e-2, device="cpu")


def warm_model(seed: int):
    tok = build_tokenizer()
    model = build_model(tok, 16, 1, 2, seed)
    items = tasks.make_splits(8, 4, 4, 64, seed).warm
    losses = sft(model, tok, items, 5, 8, 3e-3, seed)
    return tok, model, losses


def test_warmup_and_grpo_are_deterministic_for_a_seed(tmp_path):
    import torch

    logs, weights = [], []
    for attempt in range(2):
        tok, model, losses = warm_model(seed=0)
        assert len(losses) == 5 and losses[-1] < losses[0]
        pool = tasks.make_splits(8, 4, 4, 64, 0).pool
        log = tmp_path / str(attempt) / "rollouts.jsonl"
        with reward_server(log, samples_per_step=16, samples_per_epoch=32) as url:
            train(model, tok, pool, CFG, 3, url, tmp_path / str(attempt) / "ckpt", seed=0, save_every=2)
        logs.append(log.read_text())
        weights.append({k: v.clone() for k, v in model.state_dict().items()})
        saved = sorted(p.name for p in (tmp_path / str(attempt) / "ckpt").iterdir())
        assert saved == ["global_step0_hf", "global_step2_hf", "global_step3_hf"]
    assert logs[0] == logs[1] and len(logs[0].splitlines()) == 3 * 16
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    rows = [json.loads(line) for line in logs[0].splitlines()]
    assert [r["step"] for r in rows] == [1] * 16 + [2] * 16 + [3] * 16
    first_pass = [r["id"] for r in rows[:32]]
    assert sorted(set(first_pass)) == sorted(it["id"] for it in pool) and all(
        first_pass.count(i) == 4 for i in first_pass
    )
    assert tok.convert_ids_to_tokens(prompt_ids(tok, "x")[-1]) == "assistant\n"  # the header ends in a newline


def test_optimizer_gives_the_final_norm_gain_its_own_rate():
    """Two parameter groups: the final RMSNorm's gain (it scales every logit) at gain_lr, every other weight at lr."""
    model = build_model(build_tokenizer(), 16, 1, 2, 0)
    opt, sched = optimizer(model, 2e-5, 1e-1)
    gain, rest = opt.param_groups
    assert gain["params"] == [model.model.norm.weight] and gain["lr"] == 1e-1 and rest["lr"] == 2e-5
    assert len(rest["params"]) + 1 == len(list(model.parameters()))  # every weight once (embeddings tied)
    assert {id(p) for p in rest["params"]}.isdisjoint({id(model.model.norm.weight)})
    sched.step()
    assert [g["lr"] for g in opt.param_groups] == [1e-1, 2e-5]  # constant


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--workers", "0"], "argument --workers: 0 is out of range"),
        (["--seeds", "0,-1"], "argument --seeds: -1 is out of range"),
        (["--seeds", "0,x"], "argument --seeds: 'x' is not an integer"),
        (["--seeds", "1,1"], "argument --seeds: '1,1' repeats a seed"),
        (["--lim_threshold", "nan"], "argument --lim_threshold: nan is out of range"),
        (["--size", "huge"], "argument --size: invalid choice"),
    ],
)
def test_run_refuses_bad_flags_before_any_work(flags, message, capsys):
    from mini.run import parse_args

    with pytest.raises(SystemExit) as exit_:
        parse_args(flags)
    assert exit_.value.code == 2 and f"error: {message}" in capsys.readouterr().err


def test_run_parses_seeds():
    from mini.run import parse_args

    assert parse_args([]).seeds == [0] and parse_args(["--seeds", "2, 0,1"]).seeds == [2, 0, 1]


def test_side_by_side_runs_chains_in_order_and_stops_at_a_failure():
    """mini/run.py's scheduler: chains start in submission order (one waiting on an earlier one cannot deadlock,
    even with one job), each chain's seconds are kept, and a failure is raised with later chains not started."""
    import threading

    from mini.run import side_by_side

    ready, seen, times = threading.Event(), [], {}
    chains = {
        "first": lambda: (seen.append("first"), ready.set()),
        "second": lambda: (ready.wait(), seen.append("second")),
    }
    side_by_side(chains, 1, times)
    assert seen == ["first", "second"] and set(times) == {"first", "second"}

    def boom():
        raise RuntimeError("stage 1 failed")

    seen.clear()
    with pytest.raises(RuntimeError, match="stage 1 failed"):
        side_by_side({"boom": boom, "later": lambda: seen.append("later")}, 1, {})
    assert seen == []


def test_tune_designs_name_only_tunable_settings():
    import argparse

    from mini.tune import design

    assert design("D1:rl_lr=1e-4,gain_lr=0.1") == ("D1", {"rl_lr": 1e-4, "gain_lr": 0.1})
    for bad in ("D1:temperature=0.5", "../x:rl_lr=1", ":rl_lr=1"):
        with pytest.raises(argparse.ArgumentTypeError):
            design(bad)
