"""The tiny policy: a character-level tokenizer made locally with `tokenizers`, a randomly initialised model with
Qwen2's architecture, and a short supervised warm-up on worked solutions.

The tokenizer has Qwen's special tokens (`<|endoftext|>` pad, `<|im_start|>`, `<|im_end|>` eos) and a Qwen-style
chat template, and prompts carry the paper's system prompt (`limr.paper.SYSTEM_PROMPT`), so a saved checkpoint
loads with `AutoTokenizer` / `AutoModelForCausalLM` like the cluster's.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch
from tqdm import tqdm

from limr.paper import SYSTEM_PROMPT

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# What every prompt repeats, one token each (after the characters): the chat template's role headers and the paper's
# system prompt. A real BPE packs common text into few tokens; one token a character made them 88 of a prompt's 113
# tokens and most of every step's cost (attention grows with the square of the length). Added tokens match the exact
# string before pre-tokenization, so questions and answers stay a token per character.
WHOLE = ["system\n", "user\n", "assistant\n", SYSTEM_PROMPT]
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tokenizer():
    """Character-level: Qwen's three special tokens, one token per printable ASCII character and the newline, then
    WHOLE's strings as one token each (a prompt is 25 tokens, not 113).

    It is a byte-level BPE without merges, the shape of Qwen2's own tokenizer: transformers 5 loads a checkpoint
    whose config says qwen2 with Qwen2Tokenizer, which rebuilds the pipeline from the vocabulary and merges and
    would silently drop the spaces and newlines of any other design (a plain character vocabulary).
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    byte_char = bytes_to_unicode()  # GPT-2 / Qwen's byte alphabet: the space is "Ġ", the newline "Ċ"
    chars = [byte_char[b] for b in (10, *range(32, 127))]
    tok = Tokenizer(models.BPE({t: i for i, t in enumerate(SPECIALS + chars)}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(SPECIALS)
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", padding_side="left"
    )
    hf.add_tokens([AddedToken(text, normalized=False, special=False) for text in WHOLE])
    hf.chat_template = CHAT_TEMPLATE
    return hf


def messages(question: str) -> list[dict]:
    """The conversation every prompt is: the paper's system prompt, then the question."""
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": question}]


def prompt_ids(tokenizer, question: str) -> list[int]:
    """The chat-template prompt (system prompt + question + assistant header) as token ids."""
    text = tokenizer.apply_chat_template(messages(question), tokenize=False, add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def build_model(tokenizer, hidden: int, layers: int, heads: int, seed: int):
    """A randomly initialised Qwen2ForCausalLM (nothing is downloaded)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=max(1, heads // 2),
        max_position_embeddings=256,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.convert_tokens_to_ids("<|im_start|>"),
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return Qwen2ForCausalLM(config)


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def sft(model, tokenizer, items: list[dict], steps: int, batch: int, lr: float, seed: int, device: str = "cpu"):
    """Supervised warm-up on worked solutions (loss on the response tokens, `<|im_end|>` included); the losses."""
    rng = random.Random(seed)
    model.to(device)
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id
    data = [
        (p := prompt_ids(tokenizer, it["prompt"]), tokenizer(it["solution"], add_special_tokens=False)["input_ids"])
        for it in items
    ]
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 20) * max(0.1, 1 - s / steps))
    model.train()
    losses = []
    bar = tqdm(range(steps), desc="warm-up (SFT)", unit="step")
    for _ in bar:
        pairs = rng.sample(data, batch)
        width = max(len(p) + len(r) + 1 for p, r in pairs)
        ids = torch.full((batch, width), pad)
        labels = torch.full((batch, width), -100)
        mask = torch.zeros((batch, width), dtype=torch.long)
        for i, (p, r) in enumerate(pairs):
            s = p + r + [eos]
            ids[i, : len(s)] = torch.tensor(s)
            mask[i, : len(s)] = 1
            labels[i, len(p) : len(s)] = torch.tensor(r + [eos])
        loss = model(input_ids=ids.to(device), attention_mask=mask.to(device), labels=labels.to(device)).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    return losses


def save(model, tokenizer, path: str | Path) -> Path:
    """An HF folder (config, weights, tokenizer with chat template) that AutoModelForCausalLM loads."""
    path = Path(path)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
