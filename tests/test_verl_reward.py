"""train/verl_reward.py through verl 0.9's own reward code on the CPU: the config verl's reward loop reads, its
load_reward_manager (verl/trainer/ppo/reward.py), and the manager's run_single on a made-up DataProto batch shaped
as its reward loop worker hands it over (verl/experimental/reward_loop/reward_loop.py, compute_score_batch: one
sample per call, all of a step's samples at once)."""

import asyncio
from pathlib import Path

import pytest

from limr.paper import BAD_FORMAT, CORRECT, WRONG
from limr.reward import score

pytest.importorskip("verl")
np = pytest.importorskip("numpy")
torch = pytest.importorskip("torch")

from omegaconf import OmegaConf  # noqa: E402
from verl import DataProto  # noqa: E402
from verl.trainer.ppo.reward import load_reward_manager  # noqa: E402

from mini.policy import build_tokenizer  # noqa: E402

REWARD_FILE = Path(__file__).resolve().parents[1] / "train" / "verl_reward.py"
PROMPT = "<|im_start|>user\nWhat is 6*7?<|im_end|>\n<|im_start|>assistant\n"
RESPONSE_LEN = 48  # the rollout's response length: a response this long without end of turn was cut off
CASES = [  # (response tokens as the model emits them, the paper's reward)
    ("6*7 = 42, so \\boxed{42}.<|im_end|>", CORRECT),
    ("It is \\boxed{41}.<|im_end|>", WRONG),
    ("forty-two<|im_end|>", BAD_FORMAT),  # no \boxed
    ("6*7 = 42, so \\boxed{42}. And then I keep going, on and on and", BAD_FORMAT),  # cut off: no end of turn
    ("\\boxed{42}<|im_end|>\nuser: and more", CORRECT),  # graded up to the end of turn
]


def reward_config(manager: str) -> OmegaConf:
    """The keys of verl's reward config (verl/trainer/config/reward/reward.yaml) that load_reward_manager reads,
    set as scripts/lib/verl.sh sets them."""
    if manager == "limr":
        reward_manager = {"source": "importlib", "name": "LimrRewardManager", "module": {"path": str(REWARD_FILE)}}
    else:
        reward_manager = {"source": "register", "name": "naive", "module": {"path": None}}
    return OmegaConf.create(
        {
            "reward": {
                "custom_reward_function": {
                    "path": str(REWARD_FILE),
                    "name": "compute_score",
                    "reward_kwargs": {"grader": "default", "workers": 1},
                },
                "reward_manager": reward_manager,
                "reward_model": {"enable": False},
                "sandbox_fusion": None,
            }
        }
    )


def batch(tokenizer, responses: list[str], prompt_ids: list[str]) -> DataProto:
    """A step's batch as verl's rollout leaves it: left-padded prompts, right-padded responses, attention mask over
    both, and the parquet row's fields repeated per sample; samples of one prompt share ONE extra_info dict, as
    DataProto.repeat(interleave=True) leaves them (numpy repeats the object, not a copy)."""
    pad = tokenizer.pad_token_id
    prompt = tokenizer(PROMPT, add_special_tokens=False)["input_ids"]
    rows, masks = [], []
    for text in responses:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"][:RESPONSE_LEN]
        rows.append(ids + [pad] * (RESPONSE_LEN - len(ids)))
        masks.append([1] * len(prompt) + [1] * len(ids) + [0] * (RESPONSE_LEN - len(ids)))
    shared = {pid: {"split": "train", "index": i, "prompt_id": pid} for i, pid in enumerate(dict.fromkeys(prompt_ids))}
    return DataProto.from_dict(
        tensors={
            "prompts": torch.tensor([prompt] * len(responses)),
            "responses": torch.tensor(rows),
            "attention_mask": torch.tensor(masks),
        },
        non_tensors={
            "data_source": np.array(["limr/math"] * len(responses), dtype=object),
            "reward_model": np.array([{"ground_truth": "42", "style": "rule"}] * len(responses), dtype=object),
            "extra_info": np.array([shared[pid] for pid in prompt_ids], dtype=object),
        },
    )


def run_step(manager, data: DataProto) -> list[dict]:
    """What verl's RewardLoopWorker.compute_score_batch does: run_single on each one-sample slice, concurrently, on
    the event loop the manager was made in (RewardManagerBase keeps it and runs the decoding and grading there)."""

    async def all_samples():
        return await asyncio.gather(*(manager.run_single(data[i : i + 1]) for i in range(len(data))))

    return manager.loop.run_until_complete(all_samples())


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


def test_the_paper_reward_through_verls_reward_manager(tokenizer):
    manager = load_reward_manager(reward_config("limr"), tokenizer)
    assert type(manager).__name__ == "LimrRewardManager"
    responses = [text for text, _ in CASES]
    prompt_ids = ["q0", "q0", "q1", "q1", "q2"]
    data = batch(tokenizer, responses, prompt_ids)
    out = run_step(manager, data)
    assert [o["reward_score"] for o in out] == [expected for _, expected in CASES]
    # the same rule set as the reward server's: limr.reward.score on the text the model emitted
    assert [o["reward_score"] for o in out] == [score(text, "42").reward for text in responses]
    for o, pid, (_, expected) in zip(out, prompt_ids, CASES, strict=True):
        info = o["reward_extra_info"]
        assert {k: info[k] for k in ("score", "acc", "prompt_id")} == {
            "score": expected,
            "acc": float(expected == CORRECT),
            "prompt_id": pid,
        }
    # the samples of a prompt shared one dict: each got its own copy, and the shared one is left as it was
    infos = data.non_tensor_batch["extra_info"]
    assert infos[0] is not infos[1]
    assert "limr_raw_response" in infos[0] and infos[0]["limr_raw_response"] != infos[1]["limr_raw_response"]


def test_cut_off_is_a_format_error_only_with_our_manager(tokenizer):
    """verl's plain naive manager decodes without special tokens: the end of turn is gone, so the cut-off rule
    cannot apply and the response is graded on its text (the module docstring says so)."""
    text = CASES[3][0]
    assert len(tokenizer(text, add_special_tokens=False)["input_ids"]) >= RESPONSE_LEN  # really cut off
    ours = run_step(load_reward_manager(reward_config("limr"), tokenizer), batch(tokenizer, [text], ["q"]))
    plain = run_step(load_reward_manager(reward_config("naive"), tokenizer), batch(tokenizer, [text], ["q"]))
    assert ours[0]["reward_score"] == BAD_FORMAT
    assert plain[0]["reward_score"] == CORRECT
    assert plain[0]["reward_extra_info"]["prompt_id"] == "q"


def test_grader_limr_is_passed_through_reward_kwargs(tokenizer):
    """`grader=limr` reproduces the release's reward: it reads a bare-string `3\\sqrt{13}` gold answer as 3."""
    config = reward_config("limr")
    data = batch(tokenizer, ["\\boxed{3}<|im_end|>"], ["q"])
    data.non_tensor_batch["reward_model"][0] = {"ground_truth": "3\\sqrt{13}", "style": "rule"}
    rewards = {}
    for grader in ("default", "limr"):
        config.reward.custom_reward_function.reward_kwargs.grader = grader
        rewards[grader] = run_step(load_reward_manager(config, tokenizer), data)[0]["reward_score"]
    assert rewards == {"default": WRONG, "limr": CORRECT}
