"""OpenRLHF 0.11's reward request and reply, as pure functions: train/reward_server.py (HTTP) and
train/reward_func.py (OpenRLHF's file mode) both use them, so both answer a sample alike.

A request is `{"query": [q], "prompts": [p], "labels": [l]}`: the query is the chat-templated prompt followed by
the response (special tokens kept), the label is data/prepare.py's `{"id","answer","split"}` (limr.dataset) or a
plain gold answer. The reply gives one reward per sample, `scores` (1/0 correct, for OpenRLHF's dynamic filtering)
and per-sample numbers OpenRLHF logs the means of. train/README.md, "The protocol", has the details.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from limr.dataset import SPLITS, decode_label
from limr.jsonio import DataError

ASSISTANT_TURN = "<|im_start|>assistant\n"  # Qwen's chat template opens the model's turn with this


class PayloadError(ValueError):
    """A request the server cannot use; `status` is the HTTP status, the message says why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Sample:
    prompt_id: str
    answer: str
    split: str  # "train" or "eval"
    response: str
    fallback: bool  # the query did not start with the prompt: split at the assistant turn instead


def split_query(query: str, prompt: str | None) -> tuple[str, str, bool]:
    """(prompt text, response, fell back): the query minus its prompt, else the text after the last assistant turn.

    The query is OpenRLHF's decode of prompt + response tokens, which can differ from the prompt text (the prompt
    cut to fit, or a tokenizer that does not round-trip); with no assistant turn either, all of it is the response.
    """
    if prompt and query.startswith(prompt):
        return prompt, query[len(prompt) :], False
    cut = query.rfind(ASSISTANT_TURN)
    if cut < 0:
        return "", query, True
    cut += len(ASSISTANT_TURN)
    return query[:cut], query[cut:], True


def prompt_hash(prompt_text: str) -> str:
    """A short stable id for a prompt whose label names none (a plain gold answer)."""
    return "sha1:" + hashlib.sha1(prompt_text.strip().encode("utf-8", "surrogatepass")).hexdigest()[:16]


def make_sample(query: str, prompt: str | None, label: str, where: str = "") -> Sample:
    prompt_text, response, fallback = split_query(query, prompt)
    try:
        decoded = decode_label(label)
    except RecursionError:  # valid JSON nested deeper than the parser goes
        raise PayloadError(422, f"{where}the label is JSON nested too deep to read") from None
    except DataError as e:  # an answer that is null, or an integer too long to read
        raise PayloadError(422, f"{where}{e}") from None
    except ValueError as e:  # valid JSON Python will not read: an integer of more than 4,300 digits
        raise PayloadError(422, f"{where}the label is JSON that cannot be read ({str(e)[:120]})") from None
    if decoded["split"] not in SPLITS:
        raise PayloadError(422, f"{where}the label's split must be one of {SPLITS}, got {decoded['split']!r}")
    pid = decoded["id"]
    pid = prompt_hash(prompt_text) if pid is None or pid == "" else str(pid)
    return Sample(pid, decoded["answer"], decoded["split"], response, fallback)


def _string_list(data: dict, key: str, optional: bool = False) -> list | None:
    value = data.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, list):
        got = "nothing" if value is None else type(value).__name__
        raise PayloadError(422, f"'{key}' must be a list of strings, got {got}")
    for i, item in enumerate(value):
        if not (isinstance(item, str) or (optional and item is None)):
            raise PayloadError(422, f"'{key}'[{i}] must be a string, got {type(item).__name__}")
    return value


def parse_payload(body: bytes, max_samples: int) -> list[Sample]:
    """OpenRLHF 0.11's {"query", "prompts", "labels"} (prompts may be left out) -> one Sample per query."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise PayloadError(400, f"the body is not valid JSON ({type(e).__name__}: {str(e)[:200]})") from None
    if not isinstance(data, dict):
        raise PayloadError(422, f"expected a JSON object with 'query', 'prompts', 'labels'; got {type(data).__name__}")
    if isinstance(data.get("query"), list) and len(data["query"]) > max_samples:
        raise PayloadError(413, f"{len(data['query'])} samples in one request; at most {max_samples} "
                                "(--max_samples_per_request)")  # fmt: skip
    queries, labels = _string_list(data, "query"), _string_list(data, "labels")
    prompts = _string_list(data, "prompts", optional=True) or [None] * len(queries)
    if not len(queries) == len(prompts) == len(labels):
        lengths = f"{len(queries)}, {len(prompts)}, {len(labels)}"
        raise PayloadError(422, f"'query', 'prompts' and 'labels' must be as long as each other, got {lengths}")
    return [
        make_sample(q, p, label, f"labels[{i}]: ")
        for i, (q, p, label) in enumerate(zip(queries, prompts, labels, strict=True))
    ]


def reply(graded: list) -> dict:
    """OpenRLHF's reply: one reward per sample, `scores` 1/0 correctness, and per-sample numbers it logs."""
    return {
        "rewards": [g.reward for g in graded],
        "scores": [float(g.correct) for g in graded],
        "extra_logs": {
            "correct": [float(g.correct) for g in graded],
            "format_error": [float(g.format_error is not None) for g in graded],
            "timed_out": [float(g.timed_out) for g in graded],
        },
    }
