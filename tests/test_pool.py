"""Tests of limr/pool.py: results in input order, the rewards of limr.reward, hostile responses that never
crash a worker, never run code and never pass the hard limit, and a stuck worker killed and replaced."""

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from limr.paper import BAD_FORMAT, CORRECT, WRONG
from limr.pool import GradingPool

REPO = Path(__file__).resolve().parents[1]
END = "<|im_end|>"
HOSTILE_LIMIT_S = 3.0  # the default hard limit of the shared pools


@pytest.fixture(scope="module")
def pool():
    with GradingPool(workers=2, hard_limit_s=HOSTILE_LIMIT_S) as p:
        yield p


@pytest.fixture(scope="module")
def limr_pool():
    with GradingPool(workers=2, hard_limit_s=HOSTILE_LIMIT_S, mode="limr") as p:
        yield p


def test_results_in_input_order(pool):
    # alternating right and wrong answers, so that a reordering shows in the rewards
    pairs = [(f"\\boxed{{{i}}}" + END, str(i if i % 3 else i + 1)) for i in range(60)]
    results = pool.map(pairs)
    assert [g.extracted for g in results] == [str(i) for i in range(60)]
    assert [g.reward for g in results] == [CORRECT if i % 3 else WRONG for i in range(60)]
    assert all(not g.timed_out and g.seconds >= 0 for g in results)


@pytest.mark.parametrize(
    "response, answer, expected_reward, expected_error",
    [
        ("The answer is $\\boxed{5}$." + END, "5", CORRECT, None),  # correct
        ("The answer is $\\boxed{6}$." + END, "5", WRONG, None),  # wrong
        ("The answer is $\\boxed{5}$.", "5", BAD_FORMAT, "truncated"),  # cut off
        ("The answer is 5." + END, "5", BAD_FORMAT, "no_box"),  # no box
        ("\\boxed{1}" * 5 + END, "1", BAD_FORMAT, "too_many_boxes"),  # too many boxes
        ("abcde" * 5 + "\\boxed{5}" + END, "5", BAD_FORMAT, "repeat"),  # a repeat
        ("\\boxed{\\frac{1}{2}}" + END, "0.5", CORRECT, None),  # a parse through math-verify in the worker
    ],
)
def test_rewards(pool, response, answer, expected_reward, expected_error):
    g = pool.submit(response, answer).result(timeout=30)
    assert (g.reward, g.format_error, g.timed_out) == (expected_reward, expected_error, False)
    assert g.correct == (expected_reward == CORRECT)


def _garbage(n: int, seed: int = 0) -> str:
    """Random bytes read as latin-1: control characters, NULs, and half the text outside ASCII."""
    return random.Random(seed).randbytes(n).decode("latin-1")


def _clean_garbage(n: int) -> str:
    # garbage that keeps out of the box syntax, to reach the grader inside a box
    return "".join(c for c in _garbage(4 * n, seed=1) if c not in "{}\\$")[:n]


# deep nesting, one level a line so that the repeat rule lets it through to math-verify; the gold answer is
# as deep, so that the grader's length guard does not decide either (the release's regex reads 4 levels)
def nested_braces(leaf: str) -> str:
    return "{\n" * 1000 + leaf + "\n}" * 1000


def nested_fracs(leaf: str) -> str:
    return "\\frac{\n" * 300 + leaf + "}{2}\n" * 300


LONG_TEXT = "\n".join(f"Step {i}: we add {i} and {i * i + 7} to get {i * i + i + 7}." for i in range(4_000))

# (response, answer, expected rewards): what a hostile response gets in the default and the limr mode
HOSTILE_CASES = [
    (LONG_TEXT + "\nSo $\\boxed{5}$." + END, "5", CORRECT, CORRECT),  # 200 KB of reasoning, then the answer
    ("x " * 100_000 + "\\boxed{5}" + END, "5", BAD_FORMAT, BAD_FORMAT),  # a 200 KB line of repeats
    (LONG_TEXT + "\\boxed{5}", "5", BAD_FORMAT, BAD_FORMAT),  # 200 KB without an end marker
    ("\\boxed{" + "{" * 1000 + "1" + "}" * 1000 + "}" + END, "1", BAD_FORMAT, BAD_FORMAT),  # 1,000 braces: a repeat
    ("\\boxed{" + nested_braces("1") + "}" + END, nested_braces("2"), WRONG, BAD_FORMAT),  # ... one a line
    ("\\boxed{" + nested_fracs("1") + "}" + END, nested_fracs("2"), WRONG, BAD_FORMAT),  # 300 nested \frac
    ("\\boxed{10^{10^{10^{10}}}}" + END, "5", WRONG, WRONG),  # a power tower sympy would expand for ever
    ("\\boxed{(10^{10^{10}})!}" + END, "5", WRONG, WRONG),  # a giant factorial
    ("\\boxed{{{5}" + END, "5", BAD_FORMAT, BAD_FORMAT),  # unbalanced: never closed
    ("\\boxed{5}}}}}" + END, "5", CORRECT, CORRECT),  # unbalanced: extra closing braces after the box
    ("}}}{{{ \\boxed{5}" + END, "5", CORRECT, CORRECT),  # unbalanced: stray braces before it
    (_garbage(20_000) + "\\boxed{5}" + END, "5", BAD_FORMAT, BAD_FORMAT),  # binary garbage: garbled
    ("\\boxed{" + _clean_garbage(20) + "}" + LONG_TEXT[:2000] + END, "5", WRONG, WRONG),  # garbage as the answer
    ("\\boxed{\x00}" + END, "0", WRONG, WRONG),  # a NUL byte as the answer
    ("\\boxed{\ud800}" + END, "5", WRONG, WRONG),  # a lone surrogate
]


@pytest.mark.parametrize("response, answer, default_reward, limr_reward", HOSTILE_CASES)
def test_hostile_responses(pool, limr_pool, response, answer, default_reward, limr_reward):
    for p, expected in ((pool, default_reward), (limr_pool, limr_reward)):
        g = p.submit(response, answer).result(timeout=60)
        assert g.reward == expected
        assert g.format_error is None or not g.format_error.startswith("error")  # no exception in the grader
        assert g.seconds <= HOSTILE_LIMIT_S  # the hard limit holds (a timed-out result reports the limit)


@pytest.mark.parametrize(
    "template",
    [
        "\\boxed{{__import__('os').system('touch {path}')}}",  # os.system through __import__
        "\\boxed{{eval(\"__import__('os').system('touch {path}')\")}}",  # through eval
        "\\boxed{{(lambda: open('{path}', 'w'))()}}",  # a lambda that writes the file
        "\\boxed{{__import__('subprocess').call(['touch', '{path}'])}}",  # subprocess
    ],
)
def test_code_in_answers_never_runs(pool, limr_pool, template, tmp_path):
    target = tmp_path / "pwned"
    response = template.format(path=target) + END
    results = [p.submit(response, "0").result(timeout=30) for p in (pool, limr_pool)]
    assert not target.exists()
    assert [g.reward for g in results] == [WRONG, WRONG]  # well formed, and wrong: os.system's 0 never computed


@pytest.mark.parametrize(
    "mode, hostile, gold, timeout_reward",
    [
        ("default", "\\boxed{(x+1)^{400}}", "x^2+1", WRONG),  # ~4 s of sympy simplifying: a wrong answer
        ("limr", "\\boxed{$(x+1)^{400}$}", "$x^2+1$", BAD_FORMAT),  # ~2.7 s: a format error, as the release's alarm
    ],
)
def test_hard_limit_kills_and_replaces_the_worker(mode, hostile, gold, timeout_reward):
    # one worker, so the responses after the stuck one go to its replacement
    with GradingPool(workers=1, hard_limit_s=0.5, mode=mode, eos_markers=None) as p:
        results = p.map(
            [("\\boxed{5}", "5"), (hostile, gold), ("\\boxed{5}", "5"), ("\\boxed{6}", "5"), (hostile, gold)]
        )
        assert p.timeouts == 2
    before, stuck, right, wrong, stuck_again = results
    assert (before.reward, before.timed_out) == (CORRECT, False)
    for g in (stuck, stuck_again):
        assert (g.reward, g.correct, g.extracted, g.timed_out, g.seconds) == (timeout_reward, False, None, True, 0.5)
    assert (right.reward, right.timed_out) == (CORRECT, False)  # the replacement grades
    assert (wrong.reward, wrong.timed_out) == (WRONG, False)


def test_submit_returns_a_future(pool):
    futures = [pool.submit("\\boxed{7}" + END, "7"), pool.submit("\\boxed{8}" + END, "7")]
    assert [f.result(timeout=30).reward for f in futures] == [CORRECT, WRONG]


def test_submit_takes_any_value_as_text(pool):
    # the pool sends str(response), str(answer): a number as the gold answer is its text
    assert pool.submit("\\boxed{12}" + END, 12).result(timeout=30).reward == CORRECT


def test_unknown_mode_raises():
    try:
        p = GradingPool(workers=1, mode="qwen")
    except ValueError:
        return
    with p:
        g = p.submit("\\boxed{5}" + END, "5").result(timeout=30)
    pytest.fail(f"GradingPool(mode='qwen') started and graded a right answer {g}")


class _StillbornPool(GradingPool):
    """Workers that exit as soon as they start: a broken setup (say, a worker that cannot import limr)."""

    def _spawn(self):
        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(target=os._exit, args=(3,), daemon=True)
        proc.start()
        child.close()
        return proc, parent


def test_workers_that_keep_dying_fail_loudly():
    # a pool whose workers cannot run must not quietly grade everything as a timeout
    with _StillbornPool(workers=1, hard_limit_s=2.0) as pool:
        futures = [pool.submit("\\boxed{5}" + END, "5") for _ in range(6)]
        errors = [f.exception(timeout=60) for f in futures]
    assert any(isinstance(e, RuntimeError) and "died 3 times in a row" in str(e) for e in errors)
    assert all(e is not None or f.result().timed_out for e, f in zip(errors, futures, strict=True))


class _NoRestartPool(GradingPool):
    """Workers start, but a replacement cannot (as when the process is out of file handles) while `refuse` is set."""

    refuse = False

    def _spawn(self):
        if self.refuse:
            raise OSError(24, "Too many open files")
        return super()._spawn()


# ~4 s of sympy simplifying a degree-400 polynomial: over a 0.3 s limit however loaded the machine (a power tower
# no longer serves: limr.grader refuses it before sympy sees it)
STUCK, STUCK_GOLD = "\\boxed{(x+1)^{400}}", "x^2+1"


def test_a_worker_restart_that_fails_fails_the_requests_loudly_then_recovers():
    # the dispatcher thread used to die with the OSError, and every later response waited forever
    with _NoRestartPool(workers=1, hard_limit_s=0.3, eos_markers=None) as pool:
        pool.refuse = True
        stuck = pool.submit(STUCK, STUCK_GOLD).result(timeout=60)
        assert stuck.timed_out  # its worker was killed; the replacement is started for the next response
        assert pool.healthy  # nothing has failed yet
        later = pool.submit_many([("\\boxed{5}", "5")] * 3)
        errors = [f.exception(timeout=60) for f in later]  # hang guard: each ends, with an error
        assert all(isinstance(e, RuntimeError) and "Too many open files" in str(e) for e in errors)
        assert not pool.healthy and "cannot start a grading worker" in pool.broken
        pool.refuse = False  # file handles free again: the next response starts a worker and is graded
        assert pool.submit("\\boxed{5}", "5").result(timeout=60).reward == CORRECT
        assert pool.healthy


def test_requests_share_the_workers_round_robin():
    # one request of slow responses must not hold back a later one-response request behind all of them
    done = []
    with GradingPool(workers=1, hard_limit_s=0.3, eos_markers=None, batch=1) as pool:
        slow = pool.submit_many([(STUCK, STUCK_GOLD)] * 5)
        for i, f in enumerate(slow):
            f.add_done_callback(lambda _, i=i: done.append(f"slow{i}"))
        quick = pool.submit("\\boxed{5}", "5")
        quick.add_done_callback(lambda _: done.append("quick"))
        assert quick.result(timeout=60).reward == CORRECT
        for f in slow:
            f.result(timeout=60)
    # the worker holds at most one slow response and the queue gives the next turn to the quick request
    assert done.index("quick") <= 2, done


def test_cancelled_responses_are_not_graded():
    with GradingPool(workers=1, hard_limit_s=0.3, eos_markers=None, batch=1) as pool:
        first = pool.submit(STUCK, STUCK_GOLD)  # keeps the only worker busy while the next ones are cancelled
        dropped = pool.submit_many([("\\boxed{5}", "5")] * 4)
        cancelled = [f.cancel() for f in dropped]
        assert first.result(timeout=60).timed_out
        assert pool.submit("\\boxed{6}", "6").result(timeout=60).reward == CORRECT
    # a cancel that succeeded dropped the response; one that came too late left a result: never both, never a hang
    assert [f.cancelled() for f in dropped] == cancelled
    assert all(f.result(timeout=60).reward == CORRECT for f, c in zip(dropped, cancelled, strict=True) if not c)


def test_an_empty_submission_is_no_task():
    with GradingPool(workers=1) as pool:
        assert pool.submit_many([]) == [] and pool.map([]) == []
        assert pool.submit("\\boxed{5}" + END, "5").result(timeout=60).reward == CORRECT and pool.healthy


@pytest.mark.parametrize("limit", [float("nan"), float("inf"), 0.0, -1.0])
def test_a_hard_limit_that_is_not_a_positive_number_is_refused(limit):
    with pytest.raises(ValueError, match="hard_limit_s"):
        GradingPool(workers=1, hard_limit_s=limit)


def test_a_negative_worker_count_is_refused():
    # it started no dispatcher at all, and every response waited forever
    with pytest.raises(ValueError, match="workers must be >= 1"):
        GradingPool(workers=-1)


# ---------------------------------------------------------------------------------------------------------
# Memory: each worker is capped, and a worker that runs out is replaced (issue 22, item 1)

MEMORY_CAP_MIB = 128  # LIMR_WORKER_MEMORY_MB in the runs below: far under what the hostile answers would take
TOWER = "\\boxed{10^{10^{10^{10}}}}"  # against x^2+1: 4.9 GB in one worker within the 3 s limit before the fix

# A pool of one worker in its own process, which prints each result and its workers' peak RSS. Three stand-ins
# replace sympy for what it does to a worker on answers the size guard does not know (everything else is graded
# for real): HUNGRY grows without end (stopped at 1 GiB, 16 MiB at a time, every page written), SWALLOWED does the
# same inside a library that catches the MemoryError, KILLED is a worker
# that the kernel kills (or a C library that aborts when an allocation fails), and WHO reports the worker's pid
# and its address space when it starts grading.
WORKER_SCRIPT = """
import dataclasses, json, multiprocessing, os, resource, signal, sys

import limr.pool
from limr.reward import Score

graded_for_real = limr.pool.score


def score(response, answer, *args):
    if response == "HUNGRY":
        held = [bytearray(16 * 2**20) for _ in range(64)]
        return Score(-0.5, False, f"held {len(held)} chunks", None)
    if response == "SWALLOWED":  # the same, caught inside the library (math-verify turns errors into False)
        try:
            held = [bytearray(16 * 2**20) for _ in range(64)]
        except MemoryError:
            held = []
        return Score(-0.5, False, f"held {len(held)} chunks", None)
    if response == "KILLED":
        os.kill(os.getpid(), signal.SIGKILL)
    if response == "WHO":
        with open("/proc/self/statm") as f:
            size = int(f.read().split()[0]) * resource.getpagesize()
        return Score(-0.5, False, json.dumps([os.getpid(), size]), None)
    return graded_for_real(response, answer, *args)


limr.pool.score = score  # in every worker too: each imports this file as its main module

if __name__ == "__main__":
    start_method, hard_limit_s, pairs = sys.argv[1], float(sys.argv[2]), json.loads(sys.argv[3])
    if start_method == "spawn":  # the workers are then this process's children, reaped here: RUSAGE_CHILDREN
        limr.pool._context = lambda: multiprocessing.get_context("spawn")  # holds their peak RSS
    with limr.pool.GradingPool(workers=1, hard_limit_s=hard_limit_s) as pool:
        futures = pool.submit_many(pairs)
        results = [{"error": repr(f.exception(timeout=300))} if f.exception(timeout=300) else
                   dataclasses.asdict(f.result()) for f in futures]
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps({"results": results, "peak_mib": peak_mib}))

"""


def run_worker_script(tmp_path, pairs, start_method="forkserver", hard_limit_s=HOSTILE_LIMIT_S):
    script = tmp_path / "grade_in_one_worker.py"
    script.write_text(WORKER_SCRIPT)
    env = {**os.environ, "LIMR_WORKER_MEMORY_MB": str(MEMORY_CAP_MIB), "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, str(script), start_method, str(hard_limit_s), json.dumps(pairs)],
        capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return out["results"], out["peak_mib"]


def worker_identity(result: dict) -> tuple[int, float]:
    """(pid, address space in MiB when it started grading) from a WHO result."""
    pid, size = json.loads(result["extracted"])
    return pid, size / 2**20


def test_a_power_tower_is_graded_wrong_and_the_worker_stays_under_its_memory_cap(tmp_path):
    results, peak_mib = run_worker_script(
        tmp_path, [("WHO", "5"), (TOWER + END, "x^2+1"), ("\\boxed{5}" + END, "5")], start_method="spawn"
    )
    who, tower, after = results
    assert (tower["reward"], tower["correct"], tower["extracted"]) == (WRONG, False, TOWER[7:-1])
    assert not tower["timed_out"] and not tower["out_of_memory"]  # refused by the grader, not stopped by a limit
    assert after["reward"] == CORRECT
    _, start_mib = worker_identity(who)
    assert peak_mib <= start_mib + MEMORY_CAP_MIB, f"a worker's RSS peaked at {peak_mib:.0f} MiB"


def test_a_worker_out_of_memory_fails_the_answer_and_is_replaced(tmp_path):
    pairs = [("WHO", "5"), ("HUNGRY", "5"), ("\\boxed{5}" + END, "5"), ("\\boxed{6}" + END, "5"), ("WHO", "5")]
    results, peak_mib = run_worker_script(tmp_path, pairs, start_method="spawn", hard_limit_s=60.0)
    first, hungry, right, wrong, second = results
    assert (hungry["reward"], hungry["correct"], hungry["out_of_memory"], hungry["timed_out"]) == (
        WRONG,
        False,
        True,
        False,
    )
    assert (right["reward"], wrong["reward"]) == (CORRECT, WRONG)  # the pool keeps grading, and grading right
    (first_pid, start_mib), (second_pid, _) = worker_identity(first), worker_identity(second)
    assert second_pid != first_pid  # the worker that ran out was replaced
    assert peak_mib <= start_mib + MEMORY_CAP_MIB, f"a worker's RSS peaked at {peak_mib:.0f} MiB"


def test_a_worker_that_grew_past_half_its_cap_is_replaced(tmp_path):
    # math-verify catches the MemoryError itself and answers "not equal": the worker, its heap now grown, goes
    results, peak_mib = run_worker_script(
        tmp_path, [("WHO", "5"), ("SWALLOWED", "5"), ("WHO", "5")], start_method="spawn", hard_limit_s=60.0
    )
    first, swallowed, second = results
    assert (swallowed["reward"], swallowed["extracted"], swallowed["out_of_memory"]) == (WRONG, "held 0 chunks", False)
    (first_pid, start_mib), (second_pid, _) = worker_identity(first), worker_identity(second)
    assert second_pid != first_pid
    assert peak_mib <= start_mib + MEMORY_CAP_MIB, f"a worker's RSS peaked at {peak_mib:.0f} MiB"


def test_workers_killed_while_grading_cost_their_answers_only(tmp_path):
    # four answers in a row that each kill their worker: each gets the failed grade and the pool keeps serving;
    # only workers that die before they start are a broken setup ("died 3 times in a row")
    pairs = [("WHO", "5")] + [("KILLED", "5")] * 4 + [("\\boxed{5}" + END, "5"), ("WHO", "5")]
    results, _ = run_worker_script(tmp_path, pairs, hard_limit_s=60.0)
    assert [r.get("error") for r in results] == [None] * len(pairs)
    first, *killed, right, second = results
    assert [(r["reward"], r["correct"]) for r in killed] == [(WRONG, False)] * 4
    assert right["reward"] == CORRECT
    assert worker_identity(second)[0] != worker_identity(first)[0]


@pytest.mark.parametrize("value", ["0", "63", "-5", "1.5", "lots", str(2**21)])
def test_a_memory_cap_out_of_range_is_refused(value, monkeypatch):
    monkeypatch.setenv("LIMR_WORKER_MEMORY_MB", value)
    with pytest.raises(ValueError, match="LIMR_WORKER_MEMORY_MB"):
        GradingPool(workers=1)


@pytest.mark.parametrize("mib", [0, 63, -5, 2**21])
def test_a_memory_cap_argument_out_of_range_is_refused(mib):
    with pytest.raises(ValueError, match="memory_limit_mb"):
        GradingPool(workers=1, memory_limit_mb=mib)


@pytest.mark.parametrize(
    "script, args",
    [
        ("train/reward_server.py", ["--port", "0", "--rollout_log", "out.jsonl", "--samples_per_step", "4"]),
        ("eval/grade.py", ["--input", "in.jsonl", "--output", "out.jsonl"]),
        ("eval/evaluate.py", ["--model", "nothing", "--out", "out.jsonl"]),
    ],
)
def test_every_entry_point_refuses_a_bad_memory_cap_before_any_work(script, args, tmp_path):
    (tmp_path / "in.jsonl").write_text('{"response": "\\\\boxed{5}", "answer": "5"}\n')
    env = {**os.environ, "LIMR_WORKER_MEMORY_MB": "lots", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, str(REPO / script), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert (proc.returncode, proc.stderr.splitlines()) == (2, ["error: LIMR_WORKER_MEMORY_MB='lots': must be a "
                                                               "whole number of MiB in [64, 1048576]"])  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]  # nothing written
