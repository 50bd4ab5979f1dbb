"""Evaluate checkpoints on AIME24 / AMC23 / MATH500: generate, grade, and write the accuracies of the paper's Table 2.

    bash eval/eval.sh --run_path outputs/limr/ckpt --step all                     # every global_step{N}_hf of a run
    python eval/evaluate.py --run_path outputs/limr/ckpt --step latest --benchmarks aime24,amc23
    python eval/evaluate.py --model Qwen/Qwen2.5-Math-7B --name qwen2.5-math-7b   # the base model's row
    python eval/evaluate.py --run_path outputs/limr/ckpt --step all --regrade --grader limr   # re-score, no model

The settings of each benchmark are one table, eval/benchmarks.json (paper §3.1: AIME24 and AMC23 4 samples at T
0.4, MATH500 greedy, top_p 0.95, 3,072 new tokens); --settings PATH reads another table, for other test sets
(<data_dir>/<bench>.jsonl each), as the miniature loop (mini/) does; a prompt file <data_dir>/<bench>.json (as
data/prepare.py writes) is read instead where one exists: the training prompts' pass rates before training, for
lim_selection.py --method passrate. The prompt is the model's chat template with the paper's system prompt and
the question as the user turn, as the release's eval/eval.py builds it. Generation runs on vLLM when it is
installed and a GPU is visible (one GPU per model unless --tensor_parallel_size says more; it must divide the
model's attention heads), else on transformers (CPU or one GPU, batched); both write the same
files. With several checkpoints and G GPUs (--gpus, default every visible one with vLLM), G / tensor_parallel_size
checkpoints are evaluated at once, one process per GPU group (CUDA_VISIBLE_DEVICES), each logging to
<out>/<run>/step<N>/evaluate.log. A response is graded on its final answer alone
(limr.pool with `--grader`): accuracy is the mean over all samples (the paper's number, avg@n), pass@n the share of
questions with at least one correct sample.

Writes <out>/<run>/step<N>/ (for --model: <out>/<name>/base/): <bench>.jsonl, one line per response, and
results.json, the accuracies with the settings, model, backend, seeds, grader and versions that produced them.
A benchmark already in results.json with the same settings is skipped (regraded if --grader changed); --force
generates it again, --regrade re-scores the saved responses without loading a model. Seeds: transformers
re-seeds torch with --seed before each benchmark, so a re-run on the same hardware gives the same responses;
vLLM gets LLM(seed=--seed) and request i of a benchmark SamplingParams(seed=--seed + i).
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import importlib.util
import os
import queue
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from limr.cli import MAX_WORKERS, int_in, refuse_unwritable_outputs
from limr.dataset import load_benchmark, load_prompts
from limr.folders import step_folders
from limr.grader import MODES
from limr.jsonio import DataError, is_number, iter_jsonl, read_json, write_json, write_jsonl
from limr.paper import SYSTEM_PROMPT
from limr.pool import HARD_LIMIT_S, GradingPool, worker_memory_mb
from limr.reward import EOS_MARKERS

ROOT = Path(__file__).resolve().parents[1]
SETTINGS_PATH = Path(__file__).resolve().with_name("benchmarks.json")
SETTING_KEYS = ("n", "temperature", "top_p", "max_new_tokens")
CKPT = ("global_step", "_hf")  # OpenRLHF's --ckpt.save_hf folders: global_step{N}_hf
SAVED = ("step", "")  # ours: <out>/<run>/step{N}
ROW_TYPES = {"id": str, "answer": str, "sample": int, "response": str, "truncated": bool}


@dataclass(frozen=True)
class Target:
    """One model to evaluate and the folder its outputs go to."""

    run: str
    step: int | None  # None: a model given with --model (the base row)
    model: str
    out_dir: Path

    @property
    def label(self) -> str:
        return f"{self.run} {'base' if self.step is None else f'step {self.step}'}"


# ---- Inputs: the settings table, benchmarks, checkpoints ----------------------------------------------------------


def load_settings(path: Path = SETTINGS_PATH) -> dict[str, dict]:
    """The per-benchmark table; keys starting with `_` are notes."""
    raw = read_json(path)
    if not isinstance(raw, dict):
        raise DataError(f"{path}: expected a JSON object keyed by benchmark, got {type(raw).__name__}")
    table = {k: v for k, v in raw.items() if not k.startswith("_")}
    if not table:
        raise DataError(f"{path}: no benchmarks")
    for bench, s in table.items():
        check_benchmark_name(bench, path)
        if not isinstance(s, dict) or set(s) != set(SETTING_KEYS):
            raise DataError(f"{path}: {bench}: expected exactly the keys {', '.join(SETTING_KEYS)}")
        ints_ok = all(
            isinstance(s[k], int) and not isinstance(s[k], bool) and s[k] >= 1 for k in ("n", "max_new_tokens")
        )
        if not (ints_ok and is_number(s["temperature"]) and s["temperature"] >= 0 and is_number(s["top_p"])):
            raise DataError(f"{path}: {bench}: bad settings {s}")
        if not 0 < s["top_p"] <= 1 or (s["temperature"] == 0 and s["n"] != 1):
            raise DataError(f"{path}: {bench}: top_p must be in (0, 1], and greedy decoding (T 0) needs n 1")
    return table


def check_benchmark_name(bench: str, where) -> None:
    """A benchmark's name is a file name: <data_dir>/<bench>.jsonl is read and <out>/.../<bench>.jsonl written, so a
    name `/abs/x` replaced its own input and `../victim/x` wrote outside the step folder."""
    if not bench or bench in (".", "..") or any(c in bench for c in ("/", "\\", "\0")) or Path(bench).is_absolute():
        raise DataError(f"{where}: benchmark name {bench!r} is not a file name (no '/', '\\', '..' or empty names)")


def load_questions(data_dir: Path, bench: str, limit: int | None) -> list[dict]:
    """<data_dir>/<bench>.jsonl, or a prompt file <data_dir>/<bench>.json (training prompts, for pass rates before
    training; its .jsonl beside is OpenRLHF's twin, not a benchmark), each prompt a question."""
    path = data_dir / f"{bench}.json"
    if path.is_file():
        prompts = load_prompts(path)[:limit]
        rows = [{"id": it["id"], "question": it["prompt"], "answer": it["answer"]} for it in prompts]
    else:
        path = data_dir / f"{bench}.jsonl"
        if not path.is_file():
            hint = "" if data_dir == Path("data") else f" --out {data_dir}"
            raise DataError(f"{path} not found: run python data/prepare.py{hint}")
        rows = load_benchmark(path)[:limit]
    if not rows:
        raise DataError(f"{path}: no questions")
    return rows


def pick_steps(spec: str, steps: dict[int, Path], where: str, what: str) -> list[int]:
    if not steps:
        raise DataError(f"{where}: no {what}")
    if spec == "all":
        return sorted(steps)
    if spec == "latest":
        return [max(steps)]
    if not (spec.isascii() and spec.isdigit()) or int(spec) not in steps:
        found = ", ".join(map(str, sorted(steps)))
        raise DataError(f"{where}: no step {spec!r} among the {what}: {found} (or use all / latest)")
    return [int(spec)]


def run_name(args) -> str:
    if args.name:
        return args.name
    path = Path(args.model or args.run_path)
    path = path.resolve() if path.exists() else path
    # --run_path outputs/<run>/ckpt names the run after its folder (math8k, limr), not "ckpt"
    return path.parent.name if args.run_path and path.name == "ckpt" else path.name


def resolve_targets(args) -> list[Target]:
    name = run_name(args)
    if not name or name in (".", "..") or "/" in name or os.sep in name:
        raise DataError(f"{name!r} is not a usable run name: pass --name")
    root = Path(args.out) / name
    if args.model:
        model = Path(args.model)
        model_id = str(model.resolve()) if model.exists() else args.model  # else a hub id
        return [Target(name, None, model_id, root / "base")]
    if args.regrade:  # the saved outputs, not the checkpoints (often deleted after evaluation)
        saved = step_folders(root, *SAVED, need="results.json")
        steps = pick_steps(args.step, saved, str(root), "saved results")
        return [Target(name, s, "", saved[s]) for s in steps]
    run_path = Path(args.run_path)
    if not run_path.is_dir():
        raise DataError(f"{run_path}: no such folder")
    ckpts = step_folders(run_path, *CKPT)
    steps = pick_steps(args.step, ckpts, str(run_path), "checkpoints (global_step<N>_hf folders)")
    return [Target(name, s, str(ckpts[s].resolve()), root / f"step{s}") for s in steps]


# ---- Saved outputs ----------------------------------------------------------------------------------------------


def read_results(out_dir: Path) -> dict:
    path = out_dir / "results.json"
    if not path.exists():
        return {"benchmarks": {}}
    results = read_json(path)
    if not isinstance(results, dict) or not isinstance(results.get("benchmarks"), dict):
        raise DataError(f"{path}: not a results file (no 'benchmarks' object)")
    return results


def read_rows(path: Path) -> list[dict]:
    """Saved responses, checked: the file may have been edited by hand."""
    rows = []
    for lineno, row in iter_jsonl(path):
        for key, kind in ROW_TYPES.items():
            if not isinstance(row.get(key), kind) or (kind is int and isinstance(row[key], bool)):
                raise DataError(f"{path}:{lineno}: {key!r} must be {kind.__name__}, got {row.get(key)!r:.40}")
        rows.append(row)
    if not rows:
        raise DataError(f"{path}: no responses")
    by_question(rows, str(path))
    return rows


def wanted(setting: dict, args, n_questions: int) -> dict:
    """What decides the responses: a saved benchmark with other values is not this evaluation."""
    return {**setting, "seed": args.seed, "questions": n_questions, "system_prompt": SYSTEM_PROMPT}


def plan(target: Target, benches: list[str], settings: dict, questions: dict, args) -> dict[str, str]:
    """Per benchmark: "generate", "regrade" or "skip"."""
    saved = read_results(target.out_dir)["benchmarks"]
    todo = {}
    for bench in benches:
        path, entry = target.out_dir / f"{bench}.jsonl", saved.get(bench)
        done = entry is not None and path.is_file()
        if args.regrade:
            if not done and args.benchmarks:  # asked for by name; otherwise regrade what there is
                raise DataError(f"{path}: no saved responses to regrade")
            if done:
                todo[bench] = "regrade"
        elif args.force or not done:
            todo[bench] = "generate"
        elif entry.get("generation") != (want := wanted(settings[bench], args, len(questions[bench]))):
            had = entry.get("generation") if isinstance(entry.get("generation"), dict) else {}
            diff = ", ".join(
                f"{k} {had.get(k)!r:.30} there, {v!r:.30} now" for k, v in want.items() if had.get(k) != v
            )
            raise DataError(f"{path} was generated with other settings ({diff}): pass --force to generate it again")
        else:
            todo[bench] = "regrade" if entry.get("grader") != args.grader else "skip"
        if todo.get(bench) == "regrade":
            read_rows(path)  # every saved file is checked before any is rewritten
    if not todo:
        raise DataError(f"{target.out_dir}: no saved responses to regrade")
    return todo


def limr_info() -> dict:
    """This code's version, so a results file says what produced it."""
    try:
        version = importlib.metadata.version("limr")
    except importlib.metadata.PackageNotFoundError:
        version = None
    git = ["git", "-C", str(ROOT)]
    try:
        commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10).stdout
        dirty = subprocess.run([*git, "status", "--porcelain", "-uno"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return {"version": version, "git_commit": None, "git_dirty": None}
    return {"version": version, "git_commit": commit.strip() or None, "git_dirty": bool(dirty.stdout.strip())}


def versions(*names: str) -> dict:
    found = {}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def save(target: Target, bench: str, rows: list[dict], entry: dict) -> None:
    """The responses first, then their entry in results.json: an entry always has its responses on disk."""
    write_jsonl(target.out_dir / f"{bench}.jsonl", rows)
    results = read_results(target.out_dir)
    benchmarks = {**results["benchmarks"], bench: entry}
    model = target.model or results.get("model")
    header = {"run": target.run, "step": target.step, "model": model, "system_prompt": SYSTEM_PROMPT}
    updated = datetime.now(timezone.utc).isoformat(timespec="seconds")
    write_json(
        target.out_dir / "results.json", {**header, "benchmarks": benchmarks, "limr": limr_info(), "updated": updated}
    )


# ---- Generation: one interface, two backends --------------------------------------------------------------------
# A backend is `generate(prompts, setting, seed, desc) -> [[{"response", "finish_reason", "tokens"}] * n per prompt]`,
# prompts being token ids. Both get the same ids from the same tokenizer, so both see the same prompt.


def first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def load_tokenizer(model: str):
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model)
    except (OSError, ValueError) as e:
        raise DataError(f"{model}: cannot load a tokenizer ({first_line(e)})") from None
    if not tokenizer.chat_template:
        raise DataError(f"{model}: the tokenizer has no chat template (the paper prompts through it)")
    return tokenizer


def chat_prompt(tokenizer, question: str) -> list[int]:
    messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": question}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def stop_token_ids(tokenizer, model: str) -> list[int]:
    """The tokenizer's end of sequence, the model's generation_config.json eos ids (vLLM 0.29 adds those itself:
    SamplingParams.update_from_generation_config) and Qwen's end of turn and end of text where the vocabulary has them.

    The last is Qwen2.5-Math's evaluation (QwenLM/Qwen2.5-Math evaluation/math_eval.py at ab5097e stops vLLM at
    token ids [151645, 151643] = <|im_end|>, <|endoftext|>). The release's eval.py left vLLM's default, the eos
    alone, which lets a base model whose eos is <|endoftext|> run past <|im_end|> into a made-up next turn.
    """
    from transformers import GenerationConfig

    try:
        eos = GenerationConfig.from_pretrained(model).eos_token_id
    except (OSError, ValueError):  # no (readable) generation_config.json
        eos = None
    vocab = tokenizer.get_vocab()
    ids = [
        tokenizer.eos_token_id,
        *(eos if isinstance(eos, list) else [eos]),
        *(vocab[m] for m in EOS_MARKERS if m in vocab),
    ]
    ids = list(dict.fromkeys(i for i in ids if isinstance(i, int)))
    if not ids:
        raise DataError(f"{model}: no end-of-sequence token: generation could not stop")
    return ids


def finish(new_tokens: list[int], stops: list[int], tokenizer) -> dict:
    """One generated sequence -> its text up to the first stop token, and why it ended."""
    end = next((i for i, t in enumerate(new_tokens) if t in stops), None)  # None: max_new_tokens cut it
    kept = new_tokens if end is None else new_tokens[:end]
    text = tokenizer.decode(kept, skip_special_tokens=True)
    if end is None:
        return {"response": text, "finish_reason": "length", "tokens": len(new_tokens)}
    return {"response": text, "finish_reason": "stop", "tokens": end + 1}


def generation_config(setting: dict, stops: list[int], pad: int):
    from transformers import GenerationConfig

    sampling = setting["temperature"] > 0
    kw = dict(
        max_new_tokens=setting["max_new_tokens"], do_sample=sampling, num_beams=1, eos_token_id=stops, pad_token_id=pad
    )
    if sampling:  # top_k 0 (off) as in vLLM; transformers' own default is 50
        kw.update(temperature=setting["temperature"], top_p=setting["top_p"], top_k=0)
    return GenerationConfig(**kw)


def transformers_backend(model: str, tokenizer, args):
    import torch
    from tqdm import tqdm
    from transformers import AutoModelForCausalLM, GenerationConfig

    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    try:
        lm = AutoModelForCausalLM.from_pretrained(model, dtype=dtype).to(device).eval()
    except (OSError, ValueError) as e:
        raise DataError(f"{model}: cannot load the model ({first_line(e)})") from None
    lm.generation_config = GenerationConfig()  # the checkpoint's own sampling defaults must not leak in (vLLM's don't)
    stops = stop_token_ids(tokenizer, model)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0]

    def generate(prompts: list[list[int]], setting: dict, seed: int, desc: str) -> list[list[dict]]:
        torch.manual_seed(seed)
        config = generation_config(setting, stops, pad)
        jobs = [(q, s) for q in range(len(prompts)) for s in range(setting["n"])]
        out = [[{}] * setting["n"] for _ in prompts]
        for start in tqdm(range(0, len(jobs), args.batch_size), desc=desc, unit="batch"):
            batch = jobs[start : start + args.batch_size]
            width = max(len(prompts[q]) for q, _ in batch)
            ids = [[pad] * (width - len(prompts[q])) + prompts[q] for q, _ in batch]  # left padding
            mask = [[0] * (width - len(prompts[q])) + [1] * len(prompts[q]) for q, _ in batch]
            with torch.no_grad():
                seqs = lm.generate(
                    input_ids=torch.tensor(ids, device=device),
                    attention_mask=torch.tensor(mask, device=device),
                    generation_config=config,
                )
            for (q, s), new in zip(batch, seqs[:, width:].tolist(), strict=True):
                out[q][s] = finish(new, stops, tokenizer)
        return out

    info = {
        "backend": "transformers",
        "device": device,
        "dtype": str(dtype).removeprefix("torch."),
        "batch_size": args.batch_size,
    }
    return generate, info | {"versions": versions("torch", "transformers", "math-verify")}


def vllm_backend(model: str, tokenizer, args):
    """vLLM 0.29.0, as read in its wheel (vllm/entrypoints/llm.py, sampling_params.py, outputs.py):
    `LLM(model, *, tensor_parallel_size=1, seed=0, ...)`; `LLM.generate(prompts, sampling_params=None, *,
    use_tqdm=True, ...)` with prompts as TokensPrompt dicts {"prompt_token_ids": [...]} and one SamplingParams
    per prompt (`SamplingParams(n, temperature, top_p, seed, stop_token_ids, max_tokens, ...)`, keywords), returning
    RequestOutputs in prompt order whose `.outputs` are CompletionOutputs (`.index`, `.text`, `.token_ids`,
    `.finish_reason` "stop" | "length" | "abort" | ...). Special tokens are left out of `.text` (its default)."""
    import torch
    from vllm import LLM, SamplingParams

    tp = args.tensor_parallel_size
    if torch.cuda.device_count() < 1:
        raise DataError("--backend vllm needs a GPU, and none is visible: use --backend transformers")
    llm = LLM(model=model, tensor_parallel_size=tp, seed=args.seed)
    stops = stop_token_ids(tokenizer, model)

    def generate(prompts: list[list[int]], setting: dict, seed: int, desc: str) -> list[list[dict]]:
        params = [
            SamplingParams(
                n=setting["n"],
                temperature=setting["temperature"],
                top_p=setting["top_p"],
                max_tokens=setting["max_new_tokens"],
                seed=seed + i,
                stop_token_ids=stops,
            )
            for i in range(len(prompts))
        ]
        outputs = llm.generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=True)
        return [
            [
                {"response": o.text, "finish_reason": o.finish_reason, "tokens": len(o.token_ids)}
                for o in sorted(r.outputs, key=lambda o: o.index)
            ]
            for r in outputs
        ]

    return generate, {
        "backend": "vllm",
        "tensor_parallel_size": tp,
        "versions": versions("vllm", "torch", "transformers", "math-verify"),
    }


def backend_name(name: str) -> str:
    """auto: vLLM when it is installed and a GPU is visible, else transformers."""
    if name == "auto":
        import torch

        has_vllm = importlib.util.find_spec("vllm") is not None
        name = "vllm" if has_vllm and torch.cuda.is_available() else "transformers"
    return name


def load_backend(name: str, model: str, tokenizer, args):
    return (vllm_backend if backend_name(name) == "vllm" else transformers_backend)(model, tokenizer, args)


# ---- GPUs: tensor parallel that vLLM accepts, and one checkpoint per GPU group ------------------------------------


def attention_heads(model: str) -> int:
    """num_attention_heads from the model's config.json (a local folder, else the Hugging Face hub or its cache)."""
    path = Path(model) / "config.json"
    try:
        if path.is_file():
            config = read_json(path)
        else:
            from transformers import AutoConfig

            config = AutoConfig.from_pretrained(model).to_dict()
    except (OSError, ValueError) as e:
        raise DataError(f"{model}: cannot read its config.json ({first_line(e)})") from None
    heads = config.get("num_attention_heads", config.get("text_config", {}).get("num_attention_heads"))
    if not isinstance(heads, int) or heads < 1:
        raise DataError(f"{model}: config.json has no num_attention_heads")
    return heads


def check_tensor_parallel(model: str, tp: int) -> None:
    """vLLM shards attention heads over the tensor parallel ranks and refuses a size that does not divide them
    (ModelConfig.verify_with_parallel_config); say so before any model is loaded."""
    heads = attention_heads(model)
    if heads % tp:
        fits = ", ".join(str(d) for d in range(1, heads + 1) if heads % d == 0)
        raise DataError(
            f"{model}: its {heads} attention heads do not divide over --tensor_parallel_size {tp}: use one of {fits}"
        )


def visible_gpus(args) -> list[str]:
    """--gpus, else (with vLLM) CUDA_VISIBLE_DEVICES or every GPU torch sees; transformers uses one device."""
    if args.gpus is not None:
        return [g.strip() for g in args.gpus.split(",") if g.strip()]
    if backend_name(args.backend) != "vllm":
        return []
    if os.environ.get("CUDA_VISIBLE_DEVICES", "").strip():
        return [g.strip() for g in os.environ["CUDA_VISIBLE_DEVICES"].split(",") if g.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def gpu_groups(gpus: list[str], tp: int) -> list[str]:
    """The GPUs cut into groups of tp, one model each, as CUDA_VISIBLE_DEVICES values; leftovers stay idle."""
    if gpus and len(gpus) < tp:
        raise DataError(f"--tensor_parallel_size {tp} needs {tp} GPUs, {len(gpus)} given ({','.join(gpus)})")
    return [",".join(gpus[i : i + tp]) for i in range(0, len(gpus) - tp + 1, tp)]


def one_target_argv(argv: list[str], step: int, workers: int) -> list[str]:
    """This command line for one checkpoint, run in one process on the GPUs it is given, with its share of the
    grading workers (the processes run at once: each taking every core would oversubscribe them that many times)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("--step", "--gpus", "--workers"):
            skip = True
        elif not arg.startswith(("--step=", "--gpus=", "--workers=")) and arg != "--one_process":
            out.append(arg)
    return [*out, "--step", str(step), "--workers", str(workers), "--one_process"]


def evaluate_in_parallel(targets: list[Target], groups: list[str], argv: list[str], workers: int) -> list[Target]:
    """Each target in its own process on the next free GPU group; returns the targets whose process failed."""
    free: queue.Queue[str] = queue.Queue()
    for group in groups:
        free.put(group)

    def one(target: Target) -> bool:
        group = free.get()  # blocks until a group is free: as many processes as groups
        try:
            target.out_dir.mkdir(parents=True, exist_ok=True)
            log = target.out_dir / "evaluate.log"
            print(f"{target.label}: started on CUDA_VISIBLE_DEVICES={group} (log: {log})", flush=True)
            env = {**os.environ, "CUDA_VISIBLE_DEVICES": group}
            share = max(1, workers // min(len(groups), len(targets)))  # --workers in all, shared by the processes
            cmd = [sys.executable, str(Path(__file__).resolve()), *one_target_argv(argv, target.step, share)]
            with open(log, "w") as f:
                rc = subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT).returncode
            print(f"{target.label}: {'done' if rc == 0 else f'failed (exit {rc}), see {log}'}", flush=True)
            return rc == 0
        finally:
            free.put(group)

    with ThreadPoolExecutor(max_workers=len(groups)) as pool:
        ok = list(pool.map(one, targets))
    return [t for t, good in zip(targets, ok, strict=True) if not good]


def release_memory() -> None:
    """Drop a finished model before the next step's: vLLM shuts its engine down when the LLM is collected
    (v1/engine/core_client.py registers a weakref.finalize), then the CUDA cache is emptied."""
    gc.collect()
    if "torch" in sys.modules and sys.modules["torch"].cuda.is_available():
        sys.modules["torch"].cuda.empty_cache()


# ---- Grading and the numbers --------------------------------------------------------------------------------------


def grade(pool: GradingPool, rows: list[dict], desc: str) -> int:
    """Fill `extracted`, `correct` and `seconds` (grading time) in place; returns how many hit the time limit."""
    before = pool.timeouts
    for row, g in zip(rows, pool.map(((r["response"], r["answer"]) for r in rows), progress=desc), strict=True):
        row.update(extracted=g.extracted, correct=g.correct, seconds=round(g.seconds, 6))
    return pool.timeouts - before


def by_question(rows: list[dict], where: str) -> dict[str, list[dict]]:
    """Rows grouped by question; every question must have the same number of samples."""
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row["id"], []).append(row)
    counts = sorted({len(v) for v in groups.values()})
    if len(counts) != 1:
        raise DataError(f"{where}: questions have different numbers of samples ({counts})")
    return groups


def metrics(rows: list[dict], where: str) -> dict:
    """accuracy = mean over every sample (the paper's avg@n); pass@n = share of questions with a correct sample."""
    groups = by_question(rows, where)
    correct = sum(bool(r["correct"]) for r in rows)
    return {
        "questions": len(groups),
        "n": len(rows) // len(groups),
        "samples": len(rows),
        "correct": correct,
        "accuracy": correct / len(rows),
        "pass@n": sum(any(r["correct"] for r in g) for g in groups.values()) / len(groups),
        "truncated": sum(r["truncated"] for r in rows),
        "no_answer": sum(r["extracted"] is None for r in rows),
        "mean_tokens": round(sum(r.get("tokens", 0) for r in rows) / len(rows), 1),
    }


def report(target: Target, bench: str, entry: dict, what: str) -> None:
    print(
        f"{target.label} {bench}: accuracy {100 * entry['accuracy']:.1f}% (pass@{entry['n']} "
        f"{100 * entry['pass@n']:.1f}%), {entry['questions']} questions x {entry['n']}, "
        f"{entry['truncated']} truncated, {entry['no_answer']} without an answer ({what}) -> {target.out_dir / bench}.jsonl"
    )


def generate_benchmark(target, bench, questions, setting, generate, info, tokenizer, args, pool) -> None:
    prompts = [chat_prompt(tokenizer, q["question"]) for q in questions]
    start = time.perf_counter()
    samples = generate(prompts, setting, args.seed, f"{target.label} {bench}: generating")
    seconds = time.perf_counter() - start
    rows = []
    for q, outs in zip(questions, samples, strict=True):
        if len(outs) != setting["n"]:
            raise DataError(
                f"{target.label} {bench}: the backend returned {len(outs)} samples, expected {setting['n']}"
            )
        for s, out in enumerate(outs):
            row = {"id": q["id"], "question": q["question"], "answer": q["answer"], "sample": s, **out}
            rows.append(
                row
                | {"truncated": out["finish_reason"] == "length", "extracted": None, "correct": None, "seconds": None}
            )
    timeouts = grade(pool, rows, f"{target.label} {bench}: grading")
    entry = metrics(rows, f"{target.label} {bench}") | {
        "generation": wanted(setting, args, len(questions)),
        "model": target.model,
        "grader": args.grader,
        "grading_timeouts": timeouts,
        "generation_seconds": round(seconds, 1),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),  # which GPUs, in a multi-GPU run
        **info,
    }
    save(target, bench, rows, entry)
    report(target, bench, entry, f"generated on {info['backend']}")


def regrade_benchmark(target: Target, bench: str, args, pool: GradingPool) -> None:
    path = target.out_dir / f"{bench}.jsonl"
    rows = read_rows(path)
    timeouts = grade(pool, rows, f"{target.label} {bench}: regrading")
    entry = read_results(target.out_dir)["benchmarks"][bench]
    entry = entry | metrics(rows, str(path)) | {"grader": args.grader, "grading_timeouts": timeouts}
    save(target, bench, rows, entry)
    report(target, bench, entry, f"regraded, {args.grader} grader")


def evaluate(target: Target, todo: dict, questions: dict, settings: dict, args, pool: GradingPool) -> None:
    """Generate what is missing (one model load for all of it), regrade what asks for it."""
    to_generate = [b for b, action in todo.items() if action == "generate"]
    if to_generate:
        tokenizer = load_tokenizer(target.model)
        generate, info = load_backend(args.backend, target.model, tokenizer, args)
        for bench in to_generate:
            generate_benchmark(target, bench, questions[bench], settings[bench], generate, info, tokenizer, args, pool)
        del generate
        release_memory()
    for bench in (b for b, action in todo.items() if action == "regrade"):
        regrade_benchmark(target, bench, args, pool)


# ---- Command line -------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    doc = "\n\n".join(__doc__.split("\n\n")[:2])
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--run_path", help="a training run's checkpoint folder, holding global_step{N}_hf folders")
    which.add_argument("--model", help="any HF model folder or hub id (the base model's row); writes <name>/base/")
    p.add_argument("--step", help="with --run_path: N, all or latest (default latest)")
    p.add_argument("--name", help="run name for the output folder (default: the run's folder, or the model's)")
    p.add_argument("--benchmarks", help="comma-separated subset of the settings table (default: all)")
    p.add_argument("--settings", type=Path, default=SETTINGS_PATH,
                   help="the per-benchmark settings table (default: eval/benchmarks.json)")  # fmt: skip
    p.add_argument("--data_dir", type=Path, default=Path("data"), help="where python data/prepare.py wrote them")
    out = Path(os.environ.get("OUT", "outputs")) / "eval"  # OUT: the artifacts' root, as in scripts/
    p.add_argument("--out", type=Path, default=out, help="outputs go to <out>/<run>/step<N>/ (default: $OUT/eval)")
    p.add_argument(
        "--backend", choices=("auto", "vllm", "transformers"), default="auto", help="auto: vLLM if a GPU is visible"
    )
    p.add_argument("--seed", type=int_in(0, 2**31 - 1), default=0)
    p.add_argument("--grader", choices=MODES, default="default", help="default: correct grader; limr: the release's")
    p.add_argument("--regrade", action="store_true", help="re-score saved responses; no model is loaded")
    p.add_argument("--force", action="store_true", help="generate again even where results exist")
    p.add_argument("--max_new_tokens", type=int_in(1), help="override the table's 3,072 (smoke tests)")
    p.add_argument("--limit", type=int_in(1), help="only the first N questions of each benchmark (smoke tests)")
    p.add_argument("--batch_size", type=int_in(1), default=32, help="transformers: sequences per generate call")
    p.add_argument("--device", default="auto", help="transformers: cpu, cuda, cuda:1 ... (auto: cuda if available)")
    p.add_argument("--tensor_parallel_size", type=int_in(1), default=1,
                   help="vLLM: GPUs per model (default 1); must divide the model's attention heads")  # fmt: skip
    p.add_argument("--gpus", help="GPU ids to spread checkpoints over, one model per tensor_parallel_size of them "
                   "(default: every visible GPU with vLLM)")  # fmt: skip
    p.add_argument("--one_process", action="store_true", help=argparse.SUPPRESS)  # a child of a multi-GPU run
    p.add_argument("--workers", type=int_in(1, MAX_WORKERS), default=min(os.cpu_count() or 1, MAX_WORKERS),
                   help="grading processes in all (--step all shares them among its processes)")  # fmt: skip
    args = p.parse_args(argv)
    if args.model and args.step is not None:
        p.error("--step goes with --run_path")
    args.step = args.step or "latest"
    return args


def pick_benchmarks(spec: str | None, settings: dict) -> list[str]:
    if spec is None:
        return list(settings)
    benches = list(dict.fromkeys(b.strip() for b in spec.split(",") if b.strip()))
    unknown = [b for b in benches if b not in settings]
    if unknown or not benches:
        raise DataError(f"--benchmarks: unknown {', '.join(unknown) or '(none given)'}; known: {', '.join(settings)}")
    return benches


def prepare(args) -> tuple[list[tuple[Target, dict]], dict, dict]:
    """Everything that can fail on bad input, checked before any model is loaded or file written."""
    settings = load_settings(args.settings)
    if args.max_new_tokens:
        settings = {b: s | {"max_new_tokens": args.max_new_tokens} for b, s in settings.items()}
    benches = pick_benchmarks(args.benchmarks, settings)
    targets = resolve_targets(args)
    questions = {} if args.regrade else {b: load_questions(args.data_dir, b, args.limit) for b in benches}
    plans = [(t, plan(t, benches, settings, questions, args)) for t in targets]
    refuse_unwritable_outputs(  # a symlink or device among them would be replaced: found before any model loads
        t.out_dir / name for t, todo in plans for b, action in todo.items() if action != "skip"
        for name in (f"{b}.jsonl", "results.json")
    )  # fmt: skip
    if args.tensor_parallel_size > 1 and args.backend != "transformers":
        for target, todo in plans:
            if "generate" in todo.values():
                check_tensor_parallel(target.model, args.tensor_parallel_size)
    return plans, questions, settings


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        worker_memory_mb()  # $LIMR_WORKER_MEMORY_MB, each grading worker's memory cap: checked before any work
        plans, questions, settings = prepare(args)
        for target, todo in plans:
            skipped = [b for b, action in todo.items() if action == "skip"]
            if skipped:
                print(
                    f"{target.label}: {', '.join(skipped)} done before with these settings, skipped ({target.out_dir})"
                )
        if all(action == "skip" for _, todo in plans for action in todo.values()):
            return 0
        to_generate = [t for t, todo in plans if "generate" in todo.values()]
        groups = (
            []
            if args.one_process or len(to_generate) < 2
            else gpu_groups(visible_gpus(args), args.tensor_parallel_size)
        )
        if len(groups) > 1:  # one checkpoint per GPU group at a time; what needs no model is done here after
            failed = evaluate_in_parallel(to_generate, groups, sys.argv[1:] if argv is None else argv, args.workers)
            if failed:
                raise DataError(f"{len(failed)} of {len(to_generate)} checkpoints failed: " + ", ".join(
                    str(t.out_dir / "evaluate.log") for t in failed))  # fmt: skip
            plans = [(t, todo) for t, todo in plans if t not in to_generate and set(todo.values()) != {"skip"}]
            if not plans:
                return 0
        with GradingPool(args.workers, HARD_LIMIT_S, args.grader, eos_markers=None, check_format=False) as pool:
            for target, todo in plans:
                evaluate(target, todo, questions, settings, args, pool)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
