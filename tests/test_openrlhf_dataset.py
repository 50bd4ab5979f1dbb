"""Our prompt files through OpenRLHF 0.11.2's own data path, as the training scripts configure it.

The flags come from a dry run of scripts/train_math.8k.sh parsed by OpenRLHF's parser (test_train_scripts.py);
the files are loaded as `ppo_trainer.prepare_datasets` does (`blending_datasets`, then `PromptDataset`), with a tiny
byte-level tokenizer carrying Qwen's chat template; and one rollout goes through `SingleTurnAgentExecutor`, the
client that posts to the reward server, so the test sees the exact request the server receives. vLLM (a GPU
program) is the one stand-in: an engine object that returns a fixed completion.
"""

import asyncio
import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import datasets
import pytest
from openrlhf.datasets import PromptDataset
from openrlhf.datasets.utils import blending_datasets
from openrlhf.utils.agent import SingleTurnAgentExecutor
from test_train_scripts import compile_openrlhf_main, dry_run, openrlhf_args, train_argv
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from limr.dataset import decode_label, write_prompt_files
from limr.paper import SYSTEM_PROMPT

ROOT = Path(__file__).resolve().parents[1]

# Qwen2.5's chat template for plain messages (the tool-call branches dropped): ChatML with a default system turn.
QWEN_TEMPLATE = (
    "{%- if messages[0]['role'] != 'system' %}"
    "{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

QUESTIONS = [  # (id, question, answer): the kinds of text MATH-8k holds
    ("a1", "What is $1 + 1$?", "2"),  # plain
    ("a2", "Compute $\\frac{1}{2} + \\sqrt{3}$ and write it as $\\frac{a+b\\sqrt{c}}{d}$.", "\\frac{1+2\\sqrt{3}}{2}"),
    ("a3", "Let $f(x) = \\{x\\}$.\nFind $f(\\pi)$.", "\\pi - 3"),  # braces, a newline, a backslash before a brace
    ("a4", "Résoudre: x² = 4 (π, √2, ∞).", "2"),  # non-ASCII
    ("a5", 'Which is larger, "A" or "B"?', ""),  # quotes; an empty answer (two release rows have one)
]


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    """A ~400-token byte-level BPE (so decode(encode(text)) == text) with Qwen's special tokens and template."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([SYSTEM_PROMPT] + [q for _, q, _ in QUESTIONS], trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", chat_template=QWEN_TEMPLATE
    )


@pytest.fixture(scope="module")
def openrlhf_code():
    return compile_openrlhf_main()


@pytest.fixture(autouse=True)
def datasets_cache(tmp_path, monkeypatch):
    """Keep `datasets`' cache in the test's folder."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf_datasets"))
    datasets.disable_progress_bars()


def script_args(openrlhf_code, tmp_path, script="train_math.8k.sh", **env) -> SimpleNamespace:
    """The arguments the training script gives OpenRLHF, parsed by OpenRLHF."""
    r = dry_run(tmp_path, tmp_path / "run", script, PRESET="node", **env)
    assert r.returncode == 0, r.stderr
    return openrlhf_args(openrlhf_code, train_argv(r.stdout))


def load(path: str, split: str, args: SimpleNamespace, tokenizer) -> PromptDataset:
    """What ppo_trainer.prepare_datasets does with --data.prompt_dataset (or --eval.dataset), minus the dataloader."""
    strategy = SimpleNamespace(args=args, print=lambda *a, **k: None, is_rank_0=lambda: True)
    data = blending_datasets(
        path, None, strategy, args.train.seed, max_count=args.data.max_samples, dataset_split=split
    )
    data = data.select(range(min(args.data.max_samples, len(data))))
    return PromptDataset(data, tokenizer, strategy, input_template=args.data.input_template)


def chatml(question: str) -> str:
    return f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture
def prompt_files(tmp_path) -> Path:
    """QUESTIONS, then plain rows up to one train batch of samples (the scripts refuse a smaller file)."""
    items = [{"id": i, "prompt": q, "answer": a, "source": "math"} for i, q, a in QUESTIONS]
    items += [{"id": f"p{i}", "prompt": f"What is {i} + 2?", "answer": str(i + 2)} for i in range(32 - len(items))]
    write_prompt_files(tmp_path / "math8k.json", items)
    write_prompt_files(tmp_path / "validation.json", items[:2], split="eval")
    return tmp_path


def test_prompt_text_and_label(openrlhf_code, prompt_files, tokenizer):
    args = script_args(openrlhf_code, prompt_files)
    train = load(args.data.prompt_dataset, args.data.prompt_split, args, tokenizer)
    assert len(train) == 32
    for i, (pid, question, answer) in enumerate(QUESTIONS):
        datasource, prompt, label, image = train[i]
        assert prompt == chatml(question)  # system prompt + question in the template, ending with the assistant turn
        assert decode_label(label) == {"id": pid, "answer": answer, "split": "train"}
        assert (datasource, image) == ("default", None)

    val = load(args.eval.dataset, args.eval.split, args, tokenizer)
    assert [decode_label(val[i][2])["split"] for i in range(len(val))] == ["eval", "eval"]  # logged apart
    assert val[1][1] == chatml(QUESTIONS[1][1])


def test_without_the_chat_template_flag_the_prompt_is_wrong(openrlhf_code, prompt_files, tokenizer):
    """The check above can fail: without --data.apply_chat_template OpenRLHF passes the raw message list on."""
    args = script_args(openrlhf_code, prompt_files)
    args.data.apply_chat_template = False
    prompt = load(args.data.prompt_dataset, "train", args, tokenizer)[0][1]
    assert prompt != chatml(QUESTIONS[0][1]) and isinstance(prompt, list)


class RewardServer(ThreadingHTTPServer):
    """A stand-in reward server that keeps every request body and answers one reward per sample."""

    def __init__(self):
        self.requests = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(handler):  # noqa: N805
                body = json.loads(handler.rfile.read(int(handler.headers["Content-Length"])))
                self.requests.append((handler.path, body))
                reply = json.dumps({"rewards": [1.0] * len(body["query"]), "scores": [1.0] * len(body["query"])})
                handler.send_response(200)
                handler.send_header("Content-Type", "application/json")
                handler.end_headers()
                handler.wfile.write(reply.encode())

            def log_message(handler, *args):  # noqa: N805
                pass

        super().__init__(("127.0.0.1", 0), Handler)


class Engine:
    """vLLM's place in SingleTurnAgentExecutor: returns one fixed completion and keeps what it was asked."""

    def __init__(self, token_ids):
        self.token_ids, self.prompts = token_ids, []

    async def generate(self, prompt_token_ids, sampling_params, multi_modal_data=None):
        self.prompts.append(prompt_token_ids)
        out = SimpleNamespace(token_ids=self.token_ids, finish_reason="stop", logprobs=None)
        return SimpleNamespace(outputs=[out])


@pytest.fixture
def reward_server():
    server = RewardServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def rollout(args, tokenizer, prompt, label, response):
    engine = Engine(tokenizer(text=response, add_special_tokens=False)["input_ids"])
    executor = SingleTurnAgentExecutor(remote_rm_url=args.reward.remote_url)
    params = SimpleNamespace(max_tokens=args.rollout.max_new_tokens, logprobs=None)
    out = asyncio.run(executor.execute(prompt, label, params, args.data.max_len, tokenizer, engine))
    return out, engine


def test_what_the_reward_server_receives(openrlhf_code, prompt_files, tokenizer, reward_server):
    port = reward_server.server_address[1]
    args = script_args(openrlhf_code, prompt_files, REWARD_PORT=port)
    assert args.reward.remote_url == [f"http://127.0.0.1:{port}/get_reward"]
    _, prompt, label, _ = load(args.data.prompt_dataset, "train", args, tokenizer)[1]
    response = (
        "We add them: $\\frac{1}{2} + \\sqrt{3}$, so the answer is $\\boxed{\\frac{1+2\\sqrt{3}}{2}}$.<|im_end|>"
    )

    out, engine = rollout(args, tokenizer, prompt, label, response)
    (path, body), *more = reward_server.requests
    assert path == "/get_reward" and not more  # one sample per request
    assert body == {"query": [prompt + response], "prompts": [prompt], "labels": [label]}
    assert body["query"][0][len(body["prompts"][0]) :] == response  # the server's response = query[len(prompt):]
    assert decode_label(body["labels"][0]) == {"id": "a2", "answer": QUESTIONS[1][2], "split": "train"}
    assert out["reward"] == [1.0]  # the server's reply becomes the sample's reward
    assert engine.prompts == [tokenizer(text=prompt, add_special_tokens=False)["input_ids"]]


def test_prompts_are_cut_to_1024_tokens(openrlhf_code, prompt_files, tokenizer, reward_server):
    """The paper's prompt limit: 0.11 has no prompt flag, it keeps the last max_len - max_new_tokens tokens."""
    args = script_args(openrlhf_code, prompt_files, REWARD_PORT=reward_server.server_address[1])
    long_prompt = chatml("x " * 3000)
    _, engine = rollout(args, tokenizer, long_prompt, '{"id":"l","answer":"1","split":"train"}', "1<|im_end|>")
    assert len(engine.prompts[0]) == 1024


@pytest.fixture(scope="module")
def release(shared_data, tmp_path_factory) -> Path:
    """The release's files, prepared by data/prepare.py (the project's own command)."""
    out = tmp_path_factory.mktemp("release")
    cmd = [sys.executable, "data/prepare.py", "--from", str(shared_data / "limr-release"), "--out", str(out)]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return out


@pytest.mark.parametrize(
    "script, env, file, rows, split",
    [
        ("train_math.8k.sh", {}, "math8k", 8523, "train"),  # FULL
        ("train_limr.sh", {"LIMR_PROMPTS": "limr.jsonl"}, "limr", 1389, "train"),  # the released LIMR subset
    ],
)
def test_release_data_through_openrlhf(openrlhf_code, release, tmp_path, tokenizer, script, env, file, rows, split):
    env = {k: release / v for k, v in env.items()}
    # FULL_BATCHES=0: the subset file itself (the stage-2 default copies its rows byte for byte, test_full_batches.py)
    args = script_args(openrlhf_code, tmp_path, script, MATH8K_PROMPTS=release / "math8k.jsonl",
                       VALIDATION=release / "validation.jsonl", FULL_BATCHES=0, **env)  # fmt: skip
    assert args.data.prompt_dataset == str(release / f"{file}.jsonl")
    train = load(args.data.prompt_dataset, args.data.prompt_split, args, tokenizer)
    items = json.loads((release / f"{file}.json").read_text())
    assert len(train) == len(items) == rows
    for i in range(0, rows, 97):  # every 97th row: prompt and label match the paper-format file, in order
        _, prompt, label, _ = train[i]
        assert prompt == chatml(items[i]["prompt"])
        assert decode_label(label) == {"id": items[i]["id"], "answer": items[i]["answer"], "split": split}
    # OpenRLHF turns "<image>" in a message into an image slot: no question may contain it
    assert not any("<image>" in it["prompt"] for it in items)

    val = load(args.eval.dataset, args.eval.split, args, tokenizer)
    assert len(val) == 256 and {decode_label(val[i][2])["split"] for i in range(len(val))} == {"eval"}
