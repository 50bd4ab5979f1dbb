"""Tests of eval/evaluate.py and eval/eval.sh: the whole harness on the CPU with the transformers backend, on tiny
Qwen2 models built here (random weights, a byte-level BPE tokenizer with a Qwen-style chat template), over a few
questions of each benchmark; the output files, the resume, --regrade, the aggregation on fixed responses, the
summary; the vLLM path through a fake engine with vLLM 0.29's call signatures; bad input.

Two checkpoints: step 2 has random weights (it writes noise and is cut off by max_new_tokens), step 4 is "rigged":
its attention and MLP outputs are zeroed, so the next token depends on the current one alone, and its output head
maps each token of the chain `\n` -> `\\boxed{5}` -> <|im_end|> to the next. Every answer is then `\\boxed{5}`,
sampled or greedy, which fixes the accuracies: right where the gold answer is 5.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from load_script import load_script

from limr.paper import SYSTEM_PROMPT

ROOT = Path(__file__).resolve().parents[1]
EVALUATE = ROOT / "eval" / "evaluate.py"
EVAL_SH = ROOT / "eval" / "eval.sh"
SUMMARIZE = ROOT / "eval" / "summarize.py"
RELEASE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "limr-release"

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
ANSWERS = {"aime24": ["5", "7"], "amc23": ["5", "5"], "math500": ["5", "12", "5"]}  # the rigged model says 5
MAX_NEW = "12"  # the rigged answer takes 6 tokens (5 + <|im_end|>)
ROW_KEYS = [
    "id",
    "question",
    "answer",
    "sample",
    "response",
    "finish_reason",
    "tokens",
    "truncated",
    "extracted",
    "correct",
    "seconds",
]


evaluate = load_script("eval_evaluate", EVALUATE)


def run(*args: str, cwd: Path = ROOT, script: Path = EVALUATE) -> subprocess.CompletedProcess:
    cmd = ["bash", str(script)] if script.suffix == ".sh" else [sys.executable, str(script)]
    env = {**os.environ, "PYTHON": sys.executable}  # eval.sh runs $PYTHON: this interpreter, not the PATH's python3
    return subprocess.run([*cmd, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def results(out_dir: Path) -> dict:
    return json.loads((out_dir / "results.json").read_text(encoding="utf-8"))


def snapshot(folder: Path) -> dict:
    return {
        p.relative_to(folder): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()
    }


# ---- The tiny models ---------------------------------------------------------------------------------------------


def build_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = [SYSTEM_PROMPT, "What is 2+3? The answer is \\boxed{5}.", "system user assistant"] * 20
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", chat_template=CHAT_TEMPLATE
    )


def build_model(tokenizer, rig_chain: list[int] | None = None):
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        intermediate_size=64,
        max_position_embeddings=512,
        tie_word_embeddings=False,
    )
    model = Qwen2ForCausalLM(config)
    if rig_chain:
        with torch.no_grad():
            for layer in model.model.layers:  # the residual stream stays the current token's embedding
                layer.self_attn.o_proj.weight.zero_()
                layer.mlp.down_proj.weight.zero_()
            model.lm_head.weight.zero_()
            emb = model.model.embed_tokens.weight
            for cur, nxt in zip(rig_chain, rig_chain[1:], strict=False):
                model.lm_head.weight[nxt] = 10 * emb[cur] / emb[cur].norm()
    return model


def answer_chain(tokenizer) -> list[int]:
    """The last prompt token, the tokens of `\\boxed{5}`, then <|im_end|>: all distinct, so one token fixes the next."""
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    last = tokenizer(prompt, add_special_tokens=False)["input_ids"][-1]
    chain = [last, *tokenizer("\\boxed{5}", add_special_tokens=False)["input_ids"], tokenizer.eos_token_id]
    assert len(set(chain)) == len(chain), chain
    return chain


def write_benchmarks(data: Path) -> Path:
    data.mkdir(parents=True, exist_ok=True)
    for bench, answers in ANSWERS.items():
        rows = [{"question": f"Question {i} of {bench}: what is {a}?", "answer": a} for i, a in enumerate(answers)]
        write_jsonl(data / f"{bench}.jsonl", rows)
    return data


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A run folder with two checkpoints, the benchmark files, and the whole harness run once through eval.sh."""
    tmp = tmp_path_factory.mktemp("eval")
    tokenizer = build_tokenizer()
    ckpt = tmp / "myrun" / "ckpt"
    for step, chain in ((2, None), (4, answer_chain(tokenizer))):
        build_model(tokenizer, chain).save_pretrained(ckpt / f"global_step{step}_hf")
        tokenizer.save_pretrained(ckpt / f"global_step{step}_hf")
    data = write_benchmarks(tmp / "data")
    out = tmp / "out"
    common = ["--data_dir", str(data), "--out", str(out), "--max_new_tokens", MAX_NEW, "--batch_size", "3"]
    proc = run("--run_path", str(ckpt), "--step", "all", *common, "--workers", "2", script=EVAL_SH)
    return types.SimpleNamespace(tmp=tmp, tokenizer=tokenizer, ckpt=ckpt, data=data, out=out, common=common, proc=proc)


def copy_out(world, tmp_path: Path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(world.out, out)
    return out


def main_args(world, out: Path, *extra: str) -> list[str]:
    common = [*world.common]
    common[common.index("--out") + 1] = str(out)
    return ["--run_path", str(world.ckpt), *common, "--workers", "1", *extra]


# ---- The full harness ---------------------------------------------------------------------------------------------


def test_full_run_writes_responses_and_results(world):
    assert world.proc.returncode == 0, world.proc.stderr
    run_dir = world.out / "myrun"  # named after the run folder, not "ckpt"
    assert sorted(p.name for p in run_dir.iterdir()) == ["step2", "step4"]
    for step in (2, 4):
        assert sorted(p.name for p in (run_dir / f"step{step}").iterdir()) == [
            "aime24.jsonl",
            "amc23.jsonl",
            "math500.jsonl",
            "results.json",
        ]
        res = results(run_dir / f"step{step}")
        assert (res["run"], res["step"], res["system_prompt"]) == ("myrun", step, SYSTEM_PROMPT)
        assert res["model"] == str((world.ckpt / f"global_step{step}_hf").resolve())
        assert res["limr"]["version"] == "0.1.0" and "git_commit" in res["limr"]
        for bench, answers in ANSWERS.items():
            n = 1 if bench == "math500" else 4
            entry = res["benchmarks"][bench]
            assert entry["generation"] == {
                "n": n,
                "temperature": 0.0 if bench == "math500" else 0.4,
                "top_p": 0.95,
                "max_new_tokens": int(MAX_NEW),
                "seed": 0,
                "questions": len(answers),
                "system_prompt": SYSTEM_PROMPT,
            }
            assert (entry["backend"], entry["device"], entry["grader"]) == ("transformers", "cpu", "default")
            assert (entry["questions"], entry["n"], entry["samples"]) == (len(answers), n, n * len(answers))
            rows = read_jsonl(run_dir / f"step{step}" / f"{bench}.jsonl")
            assert [(r["id"], r["sample"]) for r in rows] == [
                (f"{bench}-{q}", s) for q in range(len(answers)) for s in range(n)
            ]
            assert all(list(r) == ROW_KEYS for r in rows)
            assert all(r["truncated"] == (r["finish_reason"] == "length") for r in rows)
            assert all(0 < r["tokens"] <= int(MAX_NEW) for r in rows)
            assert entry["truncated"] == sum(r["truncated"] for r in rows)


def test_rigged_model_gives_known_accuracies(world):
    res = results(world.out / "myrun" / "step4")["benchmarks"]
    for bench, answers in ANSWERS.items():
        rows = read_jsonl(world.out / "myrun" / "step4" / f"{bench}.jsonl")
        assert all(r["response"] == "\\boxed{5}" and r["finish_reason"] == "stop" and r["tokens"] == 6 for r in rows)
        assert all(r["extracted"] == "5" and r["correct"] == (r["answer"] == "5") for r in rows)
        share = sum(a == "5" for a in answers) / len(answers)
        assert res[bench]["accuracy"] == pytest.approx(share) and res[bench]["pass@n"] == pytest.approx(share)
    assert "myrun step 4 math500: accuracy 66.7% (pass@1 66.7%)" in world.proc.stdout


def test_random_model_is_cut_off_and_scores_zero(world):
    for bench in ANSWERS:
        rows = read_jsonl(world.out / "myrun" / "step2" / f"{bench}.jsonl")
        assert sum(r["truncated"] for r in rows) >= len(rows) - 1  # noise rarely hits <|im_end|> in 12 tokens
        assert not any(r["correct"] for r in rows)


def test_rerun_skips_finished_benchmarks_without_loading_a_model(world, tmp_path):
    out = copy_out(world, tmp_path)
    before = snapshot(out)
    weights = [p for p in world.ckpt.rglob("model.safetensors")]
    for p in weights:  # a model load would now fail
        p.rename(p.with_suffix(".away"))
    try:
        proc = run(*main_args(world, out, "--step", "all"))
    finally:
        for p in weights:
            p.with_suffix(".away").rename(p)
    assert proc.returncode == 0, proc.stderr
    assert "myrun step 2: aime24, amc23, math500 done before with these settings, skipped" in proc.stdout
    assert snapshot(out) == before


def test_rerun_generates_only_what_is_missing_and_reproduces_it(world, tmp_path):
    out = copy_out(world, tmp_path)
    step2 = out / "myrun" / "step2"
    sampled = read_jsonl(step2 / "aime24.jsonl")  # the random model, sampled at T 0.4: depends on the seed
    (step2 / "aime24.jsonl").unlink()
    untouched = snapshot(out / "myrun" / "step4")
    assert evaluate.main(main_args(world, out, "--step", "all")) == 0
    again = read_jsonl(step2 / "aime24.jsonl")
    assert [{**r, "seconds": 0} for r in again] == [{**r, "seconds": 0} for r in sampled]
    assert snapshot(out / "myrun" / "step4") == untouched
    # another seed samples other responses
    assert evaluate.main(main_args(world, out, "--step", "2", "--benchmarks", "aime24", "--seed", "1", "--force")) == 0
    assert [r["response"] for r in read_jsonl(step2 / "aime24.jsonl")] != [r["response"] for r in sampled]
    assert results(step2)["benchmarks"]["aime24"]["generation"]["seed"] == 1


def test_other_settings_are_an_error_until_forced(world, tmp_path, capsys):
    out = copy_out(world, tmp_path)
    before = snapshot(out)
    assert evaluate.main(main_args(world, out, "--step", "4", "--max_new_tokens", "3", "--benchmarks", "math500")) == 2
    err = capsys.readouterr().err
    path = out / "myrun" / "step4" / "math500.jsonl"
    assert (
        err
        == f"error: {path} was generated with other settings (max_new_tokens 12 there, 3 now): pass --force to generate it again\n"
    )
    assert err.count("\n") == 1 and snapshot(out) == before
    # --force regenerates; 3 tokens cut the rigged answer to `\boxed{`: truncated, no answer
    args = main_args(world, out, "--step", "4", "--max_new_tokens", "3", "--benchmarks", "math500", "--force")
    assert evaluate.main(args) == 0
    rows = read_jsonl(out / "myrun" / "step4" / "math500.jsonl")
    assert [(r["response"], r["finish_reason"], r["tokens"], r["extracted"]) for r in rows] == [
        ("\\boxed{", "length", 3, None)
    ] * 3
    entry = results(out / "myrun" / "step4")["benchmarks"]["math500"]
    assert (entry["accuracy"], entry["truncated"], entry["no_answer"], entry["generation"]["max_new_tokens"]) == (
        0,
        3,
        3,
        3,
    )


# ---- Aggregation and --regrade on fixed responses -----------------------------------------------------------------

# (benchmark, question's gold answer, the 4 responses): accuracy and pass@4 below are counted by hand
FIXED = [
    ("aime24", "5", ["\\boxed{5}", "\\boxed{4}", "no box at all", "so \\boxed{5}."]),  # 2 of 4 right
    ("aime24", "7", ["\\boxed{1}", "\\boxed{2}", "\\boxed{3}", "\\boxed{7}"]),  # 1 of 4 right
    ("amc23", "5", ["\\boxed{6}"] * 4),  # none right
    ("amc23", "3\\sqrt{13}", ["\\boxed{3}", "\\boxed{3\\sqrt{13}}", "\\boxed{2}", "\\boxed{2}"]),  # 1 right; limr: 2
]
BY_HAND = {  # (accuracy = avg@4, pass@4) per grader
    "default": {"aime24": (3 / 8, 2 / 2), "amc23": (1 / 8, 1 / 2)},
    "limr": {"aime24": (3 / 8, 2 / 2), "amc23": (2 / 8, 1 / 2)},  # the release's grader takes 3 for 3\sqrt{13}
}


def put_fixed_responses(step_dir: Path) -> None:
    for bench in ("aime24", "amc23"):
        rows = read_jsonl(step_dir / f"{bench}.jsonl")
        cases = [c for c in FIXED if c[0] == bench]
        for row in rows:
            _, answer, responses = cases[int(row["id"].rsplit("-", 1)[1])]
            row.update(answer=answer, response=responses[row["sample"]])
        write_jsonl(step_dir / f"{bench}.jsonl", rows)


@pytest.mark.parametrize("grader", ["default", "limr"])
def test_regrade_aggregates_fixed_responses_as_counted_by_hand(world, tmp_path, grader):
    out = copy_out(world, tmp_path)
    step2 = out / "myrun" / "step2"
    put_fixed_responses(step2)
    generation = results(step2)["benchmarks"]["aime24"]["generation"]
    args = ["--run_path", str(tmp_path / "deleted" / "ckpt"), "--name", "myrun", "--out", str(out), "--step", "2"]
    proc = run(*args, "--regrade", "--grader", grader, "--workers", "2")  # the checkpoints are not needed
    assert proc.returncode == 0, proc.stderr
    res = results(step2)["benchmarks"]
    for bench, (accuracy, pass_n) in BY_HAND[grader].items():
        assert res[bench]["accuracy"] == pytest.approx(accuracy), bench
        assert res[bench]["pass@n"] == pytest.approx(pass_n), bench
        assert res[bench]["grader"] == grader and res[bench]["generation"] == generation | res[bench]["generation"]
    rows = read_jsonl(step2 / "aime24.jsonl")
    assert [r["extracted"] for r in rows[:4]] == ["5", "4", None, "5"] and [r["correct"] for r in rows[:4]] == [
        True,
        False,
        False,
        True,
    ]
    assert res["math500"]["accuracy"] == 0 and res["math500"]["grader"] == grader  # regraded too, still wrong


def test_a_rerun_with_another_grader_regrades_without_generating(world, tmp_path):
    out = copy_out(world, tmp_path)
    step2 = out / "myrun" / "step2"
    put_fixed_responses(step2)
    assert evaluate.main(main_args(world, out, "--step", "2", "--benchmarks", "amc23", "--grader", "limr")) == 0
    rows = read_jsonl(step2 / "amc23.jsonl")
    assert rows[4]["response"] == "\\boxed{3}"  # the fixed responses were kept, not generated again
    assert results(step2)["benchmarks"]["amc23"]["accuracy"] == pytest.approx(BY_HAND["limr"]["amc23"][0])


# ---- The base model's row and the summary -------------------------------------------------------------------------


def test_base_model_row_and_summary_table(world, tmp_path):
    out = copy_out(world, tmp_path)
    model = world.ckpt / "global_step4_hf"
    common = [a if a != str(world.out) else str(out) for a in world.common]
    assert evaluate.main(["--model", str(model), "--name", "tiny-base", *common, "--workers", "1"]) == 0
    base = results(out / "tiny-base" / "base")
    assert (base["run"], base["step"], base["model"]) == ("tiny-base", None, str(model.resolve()))
    proc = run("--eval_dir", str(out), "--paper", "--questions", "myrun=3", script=SUMMARIZE)
    assert proc.returncode == 0, proc.stderr
    table = (out / "summary.md").read_text(encoding="utf-8")
    assert table.splitlines()[2].startswith("| tiny-base | base | - | 50.0† [")  # responses saved: 95% intervals
    assert [re.sub(r" \[[-0-9., ]+\]", "", line) for line in table.splitlines()[:4]] == [
        "| run | step | #questions | AIME24 | MATH500 | AMC23 | average |",
        "|---|---|---:|---:|---:|---:|---:|",
        "| tiny-base | base | - | 50.0† | 66.7† | 100.0† | 72.2 |",
        "| myrun | 4 | 3 | 50.0† | 66.7† | 100.0† | 72.2 |",
    ]
    assert "| LIMR (paper) |  | 1,389 | 32.5 | 78.0 | 63.8 | 58.1 |" in table and table in proc.stdout
    with open(out / "summary.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert (rows[1]["run"], rows[1]["aime24"], rows[1]["math500"], rows[1]["average"]) == (
        "myrun",
        "50.0",
        "66.67",
        "72.22",
    )
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.skipif(not RELEASE.is_dir(), reason=f"{RELEASE} not found (public release files for tests)")
def test_on_the_prepared_release_benchmarks(world, tmp_path):
    """data/prepare.py's real output, a few questions of each benchmark."""
    data = tmp_path / "data"
    prep = subprocess.run(
        [sys.executable, str(ROOT / "data" / "prepare.py"), "--from", str(RELEASE), "--out", str(data)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert prep.returncode == 0, prep.stderr
    out = tmp_path / "out"
    args = ["--run_path", str(world.ckpt), "--step", "4", "--data_dir", str(data), "--out", str(out)]
    assert evaluate.main([*args, "--limit", "2", "--max_new_tokens", "8", "--workers", "1"]) == 0
    res = results(out / "myrun" / "step4")["benchmarks"]
    assert {b: (e["questions"], e["samples"]) for b, e in res.items()} == {
        "aime24": (2, 8),
        "amc23": (2, 8),
        "math500": (2, 2),
    }
    release = [json.loads(line) for line in (RELEASE / "aime24.jsonl").read_text(encoding="utf-8").splitlines()]
    rows = read_jsonl(out / "myrun" / "step4" / "aime24.jsonl")
    assert [(r["id"], r["question"], r["answer"]) for r in rows[::4]] == [
        (f"aime24-{i}", release[i]["question"], release[i]["answer"]) for i in range(2)
    ]


# ---- The vLLM path, through a fake engine with vLLM 0.29.0's signatures -------------------------------------------
# Read in the vllm-0.29.0 wheel (PyPI): vllm/entrypoints/llm.py `LLM.__init__(self, model, *, ..., tensor_parallel_size=1,
# dtype="auto", ..., seed=0, gpu_memory_utilization=0.92, ..., **kwargs)` (kwargs go to EngineArgs) and
# `LLM.generate(self, prompts, sampling_params=None, *, use_tqdm=True, lora_request=None, priority=None,
# tokenization_kwargs=None, mm_processor_kwargs=None) -> list[RequestOutput]` (one SamplingParams, or a list as long as
# the prompts, "paired one by one"); vllm/sampling_params.py `SamplingParams` (a msgspec Struct: keyword fields n=1,
# temperature=1.0, top_p=1.0, top_k=0, seed=None, stop=None, stop_token_ids=None, max_tokens=16, skip_special_tokens=True,
# ...); vllm/inputs/llm.py `TokensPrompt` (a TypedDict with `prompt_token_ids`); vllm/outputs.py
# `RequestOutput(request_id, prompt, prompt_token_ids, prompt_logprobs, outputs, finished, ...)` and
# `CompletionOutput(index, text, token_ids, cumulative_logprob, logprobs, ..., finish_reason=None, stop_reason=None)`;
# vllm/v1/engine/__init__.py finish reasons "stop", "length", "abort", "error", "repetition".

SAMPLING_FIELDS = {
    "n": 1,
    "presence_penalty": 0.0,
    "frequency_penalty": 0.0,
    "repetition_penalty": 1.0,
    "temperature": 1.0,
    "top_p": 1.0,
    "top_k": 0,
    "min_p": 0.0,
    "seed": None,
    "stop": None,
    "stop_token_ids": None,
    "ignore_eos": False,
    "max_tokens": 16,
    "min_tokens": 0,
    "logprobs": None,
    "detokenize": True,
    "skip_special_tokens": True,
}


class FakeSamplingParams:
    def __init__(self, **kwargs):
        unknown = set(kwargs) - set(SAMPLING_FIELDS)
        if unknown:  # msgspec.Struct rejects unknown keywords too
            raise TypeError(f"Unexpected keyword argument {sorted(unknown)}")
        for name, default in SAMPLING_FIELDS.items():
            setattr(self, name, kwargs.get(name, default))


@dataclass
class FakeCompletionOutput:
    index: int
    text: str
    token_ids: list[int]
    cumulative_logprob: float | None
    logprobs: object
    finish_reason: str | None = None
    stop_reason: int | str | None = None


@dataclass
class FakeRequestOutput:
    request_id: str
    prompt: str | None
    prompt_token_ids: list[int] | None
    prompt_logprobs: object
    outputs: list[FakeCompletionOutput]
    finished: bool
    extra: dict = field(default_factory=dict)


class FakeLLM:
    """Writes what the rigged model writes: `\\boxed{5}` then <|im_end|>, cut at max_tokens like the real engine."""

    made: list = []
    tag = False  # True: each sample's text ends with its index, to see the order the harness puts them in

    def __init__(self, model: str, *, tensor_parallel_size: int = 1, dtype: str = "auto", seed: int = 0, **kwargs):
        from transformers import AutoTokenizer

        FakeLLM.made.append({"model": model, "tensor_parallel_size": tensor_parallel_size, "seed": seed, **kwargs})
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        self.calls: list = []

    def generate(
        self,
        prompts,
        sampling_params=None,
        *,
        use_tqdm=True,
        lora_request=None,
        priority=None,
        tokenization_kwargs=None,
        mm_processor_kwargs=None,
    ):
        if isinstance(sampling_params, list) and len(sampling_params) != len(prompts):
            raise ValueError("The lengths of prompts and sampling_params must be the same.")
        self.calls.append((prompts, sampling_params))
        answer = [*self.tokenizer("\\boxed{5}", add_special_tokens=False)["input_ids"], self.tokenizer.eos_token_id]
        outputs = []
        for i, prompt in enumerate(prompts):
            params = sampling_params[i] if isinstance(sampling_params, list) else sampling_params
            ids = answer[: params.max_tokens]
            reason = "stop" if len(ids) == len(answer) else "length"
            text = self.tokenizer.decode(ids, skip_special_tokens=params.skip_special_tokens)
            completions = [
                FakeCompletionOutput(k, text + (f" #{k}" if self.tag else ""), ids, None, None, reason)
                for k in reversed(range(params.n))  # not in index order
            ]
            outputs.append(FakeRequestOutput(str(i), None, prompt["prompt_token_ids"], None, completions, True))
        return outputs


@pytest.fixture
def fake_vllm(monkeypatch):
    module = types.ModuleType("vllm")
    module.LLM, module.SamplingParams = FakeLLM, FakeSamplingParams
    monkeypatch.setitem(sys.modules, "vllm", module)
    FakeLLM.made = []
    return FakeLLM


@pytest.fixture
def eight_gpus(monkeypatch):
    """torch sees 8 GPUs (the fake engine runs on none)."""
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)


def test_vllm_backend_writes_the_same_files(world, tmp_path, fake_vllm, eight_gpus):
    out = tmp_path / "out"
    args = main_args(world, out, "--step", "4", "--backend", "vllm", "--tensor_parallel_size", "2", "--seed", "3")
    assert evaluate.main(args) == 0
    model = str((world.ckpt / "global_step4_hf").resolve())
    assert fake_vllm.made == [{"model": model, "tensor_parallel_size": 2, "seed": 3}]
    res = results(out / "myrun" / "step4")["benchmarks"]
    for bench in ANSWERS:
        ours = read_jsonl(out / "myrun" / "step4" / f"{bench}.jsonl")
        theirs = read_jsonl(world.out / "myrun" / "step4" / f"{bench}.jsonl")  # the transformers backend
        assert [{**r, "seconds": 0} for r in ours] == [{**r, "seconds": 0} for r in theirs]
        assert (res[bench]["backend"], res[bench]["tensor_parallel_size"], res[bench]["generation"]["seed"]) == (
            "vllm",
            2,
            3,
        )


def test_vllm_backend_call_arguments(world, tmp_path, fake_vllm, monkeypatch, eight_gpus):
    engines = []
    monkeypatch.setattr(FakeLLM, "__init__", _recording(FakeLLM.__init__, engines))
    monkeypatch.setattr(FakeLLM, "tag", True)
    out = tmp_path / "out"
    args = main_args(world, out, "--step", "4", "--backend", "vllm", "--tensor_parallel_size", "1", "--seed", "7")
    assert evaluate.main([*args, "--benchmarks", "amc23,math500", "--max_new_tokens", "3"]) == 0
    (amc, amc_params), (math, math_params) = engines[0].calls
    tokenizer = world.tokenizer
    im_end, eot = tokenizer.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>"])
    for prompts, params, bench, n, temperature in (
        (amc, amc_params, "amc23", 4, 0.4),
        (math, math_params, "math500", 1, 0.0),
    ):
        assert len(prompts) == len(params) == len(ANSWERS[bench])
        for i, (prompt, p) in enumerate(zip(prompts, params, strict=True)):
            assert set(prompt) == {"prompt_token_ids"}  # a TokensPrompt
            text = tokenizer.decode(prompt["prompt_token_ids"])
            assert text == (
                f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\n"
                f"Question {i} of {bench}: what is {ANSWERS[bench][i]}?<|im_end|>\n<|im_start|>assistant\n"
            )
            got = (p.n, p.temperature, p.top_p, p.max_tokens, p.seed, p.stop_token_ids)
            assert got == (n, temperature, 0.95, 3, 7 + i, [im_end, eot])
    rows = read_jsonl(out / "myrun" / "step4" / "math500.jsonl")
    expected = [("\\boxed{ #0", "length", True, 3)] * 3
    assert [(r["response"], r["finish_reason"], r["truncated"], r["tokens"]) for r in rows] == expected
    amc_rows = read_jsonl(out / "myrun" / "step4" / "amc23.jsonl")
    assert [(r["sample"], r["response"]) for r in amc_rows] == [(k, f"\\boxed{{ #{k}") for k in range(4)] * 2


def _recording(init, engines):
    def wrapped(self, *args, **kwargs):
        init(self, *args, **kwargs)
        engines.append(self)

    return wrapped


def test_vllm_backend_needs_a_visible_gpu(world, tmp_path, fake_vllm, capsys):
    out = tmp_path / "out"
    assert evaluate.main(main_args(world, out, "--step", "4", "--backend", "vllm")) == 2  # this machine has none
    err = capsys.readouterr().err
    assert err == "error: --backend vllm needs a GPU, and none is visible: use --backend transformers\n"
    assert fake_vllm.made == [] and not (out / "myrun" / "step4" / "aime24.jsonl").exists()


def test_tensor_parallel_defaults_to_one_gpu_per_model(world, tmp_path, fake_vllm, eight_gpus):
    assert evaluate.main(main_args(world, tmp_path / "out", "--step", "4", "--backend", "vllm")) == 0
    assert [m["tensor_parallel_size"] for m in fake_vllm.made] == [1]  # not the 8 visible GPUs


def test_tensor_parallel_that_does_not_divide_the_heads_is_refused_before_loading(world, tmp_path, fake_vllm, capsys):
    """Qwen2.5-7B has 28 attention heads: TP 8 is what vLLM refuses, after minutes of start-up."""
    model = tmp_path / "qwen7b-shaped"
    shutil.copytree(world.ckpt / "global_step4_hf", model)
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps(config | {"num_attention_heads": 28, "num_key_value_heads": 4}))
    out = tmp_path / "out"
    args = ["--model", str(model), "--data_dir", str(world.data), "--out", str(out), "--workers", "1"]
    assert evaluate.main([*args, "--backend", "vllm", "--tensor_parallel_size", "8"]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"error: {model}: its 28 attention heads do not divide over --tensor_parallel_size 8: "
        "use one of 1, 2, 4, 7, 14, 28\n"
    )
    assert fake_vllm.made == [] and not out.exists()  # refused before any model or file


@pytest.mark.parametrize(
    "gpus, tp, groups",
    [
        ("0,1,2,3,4,5,6,7", 1, ["0", "1", "2", "3", "4", "5", "6", "7"]),  # 8 checkpoints at once
        ("0,1,2,3,4,5,6,7", 2, ["0,1", "2,3", "4,5", "6,7"]),
        ("0,1,2,3,4,5,6,7", 3, ["0,1,2", "3,4,5"]),  # two GPUs left idle
        ("4,5,6", 1, ["4", "5", "6"]),  # the ids given, not 0..G-1
        ("", 1, []),  # no GPU: one process
    ],
)
def test_gpu_groups(gpus, tp, groups):
    assert evaluate.gpu_groups([g for g in gpus.split(",") if g], tp) == groups


def test_gpu_groups_too_few_gpus():
    with pytest.raises(evaluate.DataError, match="--tensor_parallel_size 4 needs 4 GPUs, 2 given"):
        evaluate.gpu_groups(["0", "1"], 4)


def test_one_target_argv():
    argv = ["--run_path", "r", "--step", "all", "--gpus=0,1", "--seed", "3", "--gpus", "2", "--workers", "16"]
    want = ["--run_path", "r", "--seed", "3", "--step", "7", "--workers", "2", "--one_process"]
    assert evaluate.one_target_argv(argv, 7, 2) == want  # each process its share of the cores, not all of them


def test_step_all_evaluates_one_checkpoint_per_gpu(world, tmp_path):
    """Two GPU ids, two checkpoints: two processes, each with its own CUDA_VISIBLE_DEVICES and its own log, writing
    what the single process wrote (here on the CPU: transformers ignores the GPU ids it cannot see)."""
    out = tmp_path / "out"
    proc = run(*main_args(world, out, "--step", "all", "--gpus", "0,1"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    used = {}
    for step in (2, 4):
        step_dir = out / "myrun" / f"step{step}"
        res = results(step_dir)["benchmarks"]
        used[step] = {b["cuda_visible_devices"] for b in res.values()}
        assert (
            f"myrun step {step}: started on CUDA_VISIBLE_DEVICES=" in proc.stdout
            and (step_dir / "evaluate.log").is_file()
        )
        for bench in ANSWERS:
            ours, theirs = (
                read_jsonl(step_dir / f"{bench}.jsonl"),
                read_jsonl(world.out / "myrun" / f"step{step}" / f"{bench}.jsonl"),
            )
            assert [{**r, "seconds": 0} for r in ours] == [{**r, "seconds": 0} for r in theirs]
    assert sorted(used.values(), key=sorted) == [{"0"}, {"1"}]  # one GPU each, all benchmarks of a step on it


def test_a_failed_checkpoint_process_is_one_error_line(world, tmp_path):
    out = tmp_path / "out"
    bad = tmp_path / "ckpt"
    shutil.copytree(world.ckpt, bad)
    (bad / "global_step2_hf" / "config.json").write_text("{not json")
    proc = run("--run_path", str(bad), "--name", "myrun", *main_args(world, out)[2:], "--step", "all", "--gpus", "0,1")
    assert proc.returncode == 2 and proc.stderr.count("error:") == 1, proc.stderr
    assert "1 of 2 checkpoints failed" in proc.stderr and str(out / "myrun" / "step2" / "evaluate.log") in proc.stderr
    assert (out / "myrun" / "step4" / "results.json").is_file()  # the other GPU's checkpoint finished


@pytest.mark.parametrize(
    "flag, value",
    [("--workers", "-1"), ("--workers", "0"), ("--seed", "-1"), ("--tensor_parallel_size", "0"),
     ("--limit", "0"), ("--max_new_tokens", "nan"), ("--batch_size", "2.5")],
)  # fmt: skip
def test_numeric_flags_are_checked(world, tmp_path, flag, value):
    proc = run("--run_path", str(world.ckpt), "--out", str(tmp_path / "out"), flag, value)
    assert proc.returncode == 2 and f"error: argument {flag}:" in proc.stderr, proc.stderr
    assert proc.stderr.count("error:") == 1 and not (tmp_path / "out").exists()


# ---- Bad input: one `error:` line, exit 2, nothing written ---------------------------------------------------------


def test_missing_benchmark_file_names_the_command(world, tmp_path):
    (tmp_path / "ckpt").symlink_to(world.ckpt, target_is_directory=True)
    proc = run("--run_path", "ckpt", "--name", "x", cwd=tmp_path)  # default --data_dir data/ does not exist here
    assert (proc.returncode, proc.stderr) == (2, "error: data/aime24.jsonl not found: run python data/prepare.py\n")
    assert not (tmp_path / "outputs").exists()
    partial = tmp_path / "partial"
    shutil.copytree(world.data, partial)
    (partial / "amc23.jsonl").unlink()
    proc = run("--run_path", "ckpt", "--name", "x", "--data_dir", "partial", cwd=tmp_path)
    assert proc.stderr == "error: partial/amc23.jsonl not found: run python data/prepare.py --out partial\n"
    assert proc.returncode == 2 and not (tmp_path / "outputs").exists()


# (extra arguments, the expected error line's start, built from the world's paths)
BAD = [
    (
        ["--step", "3"],
        "error: {ckpt}: no step '3' among the checkpoints (global_step<N>_hf folders): 2, 4 (or use all / latest)",
    ),
    (["--step", "first"], "error: {ckpt}: no step 'first' among the checkpoints"),
    (["--benchmarks", "aime24,gsm8k"], "error: --benchmarks: unknown gsm8k; known: aime24, amc23, math500"),
    (["--data_dir", "{bad_data}"], "error: aime24.jsonl: line 2 has no field 'answer'"),
    (["--regrade"], "error: {out}/myrun: no saved results"),
]


@pytest.mark.parametrize("extra, expected", BAD)
def test_bad_input(world, tmp_path, extra, expected):
    bad_data = write_benchmarks(tmp_path / "bad")
    (bad_data / "aime24.jsonl").write_text('{"question": "q", "answer": "1"}\n{"question": "q2"}\n')
    out = tmp_path / "out"
    paths = {"ckpt": world.ckpt, "bad_data": bad_data, "out": out}
    args = ["--run_path", str(world.ckpt), "--data_dir", str(world.data), "--out", str(out)]
    proc = run(*args, *(a.format(**paths) for a in extra))
    assert proc.returncode == 2 and proc.stderr.startswith(expected.format(**paths)), proc.stderr
    assert proc.stderr.count("\n") == 1 and not out.exists()


def test_no_checkpoints_and_conflicting_flags(tmp_path):
    proc = run("--run_path", str(tmp_path))
    assert (proc.returncode, proc.stderr) == (2, f"error: {tmp_path}: no checkpoints (global_step<N>_hf folders)\n")
    proc = run("--model", str(tmp_path), "--step", "4")
    assert proc.returncode == 2 and "error: --step goes with --run_path" in proc.stderr
    proc = run("--run_path", str(tmp_path), "--model", str(tmp_path))
    assert proc.returncode == 2 and "not allowed with argument" in proc.stderr


def test_model_without_chat_template(world, tmp_path, capsys):
    model = tmp_path / "plain"
    shutil.copytree(world.ckpt / "global_step4_hf", model)
    (model / "chat_template.jinja").unlink(missing_ok=True)
    config = json.loads((model / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (model / "tokenizer_config.json").write_text(json.dumps(config))
    args = ["--model", str(model), "--data_dir", str(world.data), "--out", str(tmp_path / "out"), "--workers", "1"]
    assert evaluate.main(args) == 2
    assert (
        capsys.readouterr().err
        == f"error: {model}: the tokenizer has no chat template (the paper prompts through it)\n"
    )
    assert not (tmp_path / "out" / "plain" / "base" / "results.json").exists()


def null_response(rows: list[dict]) -> list[dict]:
    rows[3]["response"] = None
    return rows


# (how the saved amc23.jsonl is spoilt, the error after its path)
SPOILT = [
    (null_response, ":4: 'response' must be str, got None"),  # a hand edit gone wrong
    (lambda rows: rows[:-1], ": questions have different numbers of samples ([3, 4])"),  # a line lost
    (lambda rows: [], ": no responses"),  # emptied
]


@pytest.mark.parametrize("spoil, error", SPOILT)
def test_spoilt_saved_responses_on_regrade(world, tmp_path, spoil, error):
    out = copy_out(world, tmp_path)
    path = out / "myrun" / "step4" / "amc23.jsonl"
    write_jsonl(path, spoil(read_jsonl(path)))
    before = snapshot(out)
    proc = run("--run_path", str(world.ckpt), "--out", str(out), "--step", "4", "--regrade", "--workers", "1")
    assert (proc.returncode, proc.stderr) == (2, f"error: {path}{error}\n")
    assert snapshot(out) == before  # aime24, read first, was not regraded either


# ---- The settings table and the entry points ----------------------------------------------------------------------


def test_settings_table_is_the_papers():
    table = evaluate.load_settings()
    assert table == {
        "aime24": {"n": 4, "temperature": 0.4, "top_p": 0.95, "max_new_tokens": 3072},
        "amc23": {"n": 4, "temperature": 0.4, "top_p": 0.95, "max_new_tokens": 3072},
        "math500": {"n": 1, "temperature": 0.0, "top_p": 0.95, "max_new_tokens": 3072},
    }
    if RELEASE.is_dir():  # the release's eval/config.json agrees on n and temperature
        release = json.loads((RELEASE / "eval_config.json").read_text())
        assert {b: {k: s[k] for k in ("n", "temperature")} for b, s in table.items()} == release


# (a table entry, what is wrong with it)
BAD_TABLES = [
    ({"n": 4, "temperature": 0.4, "top_p": 0.95}, "expected exactly the keys"),  # max_new_tokens missing
    ({"n": 0, "temperature": 0.4, "top_p": 0.95, "max_new_tokens": 8}, "bad settings"),  # no samples
    ({"n": 2, "temperature": 0, "top_p": 0.95, "max_new_tokens": 8}, "greedy decoding"),  # greedy twice is a waste
    ({"n": 1, "temperature": 0.4, "top_p": 0, "max_new_tokens": 8}, "top_p must be"),  # top_p out of range
    ({"n": True, "temperature": 0.4, "top_p": 0.9, "max_new_tokens": 8}, "bad settings"),  # a bool is no count
]


@pytest.mark.parametrize("entry, message", BAD_TABLES)
def test_bad_settings_table(tmp_path, entry, message):
    path = tmp_path / "benchmarks.json"
    path.write_text(json.dumps({"_source": "x", "aime24": entry}))
    with pytest.raises(evaluate.DataError, match=message):
        evaluate.load_settings(path)


@pytest.mark.parametrize(
    "content, message", [("[1, 2]", "expected a JSON object"), ('{"_note": "x"}', "no benchmarks")]
)
def test_settings_file_that_is_no_table(tmp_path, content, message):
    path = tmp_path / "benchmarks.json"
    path.write_text(content)
    with pytest.raises(evaluate.DataError, match=message):
        evaluate.load_settings(path)


def test_another_settings_table_evaluates_its_own_benchmark(world, tmp_path):
    """--settings: another test set (as mini/ uses), read from <data_dir>/<bench>.jsonl with its own settings."""
    data = tmp_path / "data"
    data.mkdir()
    rows = [{"id": f"q{i}", "question": f"What is {a}?", "answer": a} for i, a in enumerate(ANSWERS["math500"])]
    write_jsonl(data / "held_out.jsonl", rows)
    table = tmp_path / "mine.json"
    table.write_text(json.dumps({"held_out": {"n": 1, "temperature": 0, "top_p": 1.0, "max_new_tokens": 5}}))
    out = tmp_path / "out"
    proc = run("--run_path", str(world.ckpt), "--step", "4", "--data_dir", str(data), "--settings", str(table),
               "--out", str(out), "--workers", "1")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    res = results(out / "myrun" / "step4")
    assert list(res["benchmarks"]) == ["held_out"]
    assert res["benchmarks"]["held_out"]["generation"]["max_new_tokens"] == 5
    assert [r["id"] for r in read_jsonl(out / "myrun" / "step4" / "held_out.jsonl")] == [r["id"] for r in rows]
    proc = run("--run_path", str(world.ckpt), "--data_dir", str(data), "--settings", str(table), "--out",
               str(out), "--benchmarks", "aime24")  # fmt: skip
    assert proc.returncode == 2 and proc.stderr == "error: --benchmarks: unknown aime24; known: held_out\n"


def test_stop_tokens(world, tmp_path):
    tokenizer = world.tokenizer  # eos <|im_end|>; <|endoftext|> is also in the vocabulary
    im_end, eot = tokenizer.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>"])
    model = world.ckpt / "global_step4_hf"
    assert evaluate.stop_token_ids(tokenizer, str(model)) == [im_end, eot]
    # a model whose generation_config.json names other eos ids stops there too, as vLLM would
    shutil.copytree(model, tmp_path / "m")
    config = json.loads((tmp_path / "m" / "generation_config.json").read_text())
    (tmp_path / "m" / "generation_config.json").write_text(json.dumps(config | {"eos_token_id": [17, eot]}))
    assert evaluate.stop_token_ids(tokenizer, str(tmp_path / "m")) == [im_end, 17, eot]


def test_entry_points_document_their_commands():
    assert subprocess.run(["bash", "-n", str(EVAL_SH)]).returncode == 0
    proc = run("--help")
    assert proc.returncode == 0 and "bash eval/eval.sh --run_path" in proc.stdout
    assert evaluate.__doc__.split("\n\n")[1].lstrip().startswith("bash eval/eval.sh --run_path")
    assert "--run_path outputs/limr/ckpt --step all" in EVAL_SH.read_text()


def test_transformers_sampling_matches_vllm_defaults():
    """vLLM samples from the whole vocabulary (top_k 0) with no repetition penalty; transformers' own defaults differ
    (top_k 50) and a checkpoint's generation_config.json may set more, so every setting is spelled out."""
    sampled = evaluate.generation_config({"n": 4, "temperature": 0.4, "top_p": 0.95, "max_new_tokens": 9}, [7, 8], 0)
    assert (sampled.do_sample, sampled.temperature, sampled.top_p, sampled.top_k) == (True, 0.4, 0.95, 0)
    assert (sampled.max_new_tokens, sampled.eos_token_id, sampled.pad_token_id, sampled.num_beams) == (9, [7, 8], 0, 1)
    greedy = evaluate.generation_config({"n": 1, "temperature": 0.0, "top_p": 0.95, "max_new_tokens": 9}, [7], 7)
    assert greedy.do_sample is False and greedy.top_k is None and greedy.temperature is None
