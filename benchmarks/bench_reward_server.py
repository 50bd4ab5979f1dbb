"""Requests per second and added latency of the reward server over calling the grading pool directly, in one run.

    python benchmarks/bench_reward_server.py                      # 64 clients, 20,000 requests per saturated phase
    python benchmarks/bench_reward_server.py --requests 2000 --paced_requests 500   # quicker
    python benchmarks/bench_reward_server.py --compare_http --requests 2000          # h11 (default) vs httptools

The same responses go through four phases (synthetic but shaped like the policy's: ~1,500 characters of reasoning,
a boxed answer, right or wrong, and Qwen's end-of-turn marker, behind a chat-templated prompt):
  direct, saturated  64 asyncio tasks, each awaiting limr.pool.GradingPool.submit in turn: the baseline, no HTTP
  server, saturated  64 clients POSTing to train/reward_server.py on 127.0.0.1, each request back to back
  direct, paced      requests started at --rate per second (up to 64 in flight)
  server, paced      the same schedule through the server
  keep-alive, paced  the same, from one aiohttp session that reuses its 64 connections (OpenRLHF opens one per request)
  HTTP floor, paced  OpenRLHF's request pattern with empty lists: client, HTTP and framework, no grading
Every server request goes through OpenRLHF 0.11.2's own client code (SingleTurnAgentExecutor's HTTP path: a new
aiohttp session per request, as each vLLM engine does). Both sides grade with the same number of worker processes.
Saturated phases give throughput; on a small machine the clients share the cores with the server, so the server
process's own CPU time per request (from /proc, Linux) is reported too: its capacity is about 1 / that per core
the event loop gets. Paced phases give the latency a training run sees, since vLLM engines hand in finished samples
far below saturation. Added latency = server - direct at the same load. The log is checked: one line per request.
"""

import argparse
import asyncio
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from limr.dataset import encode_label
from limr.pool import GradingPool
from limr.request import make_sample

REPO = Path(__file__).resolve().parents[1]
SERVER = REPO / "train" / "reward_server.py"
EOS = "<|im_end|>"
SENTENCES = [
    "First we restate the problem and name the unknown quantity.",
    "Combining like terms simplifies the expression considerably.",
    "Substituting the known values gives a linear equation.",
    "We check the boundary cases to make sure nothing is missed.",
    "Multiplying both sides by the common denominator clears the fractions.",
    "Each term is computed separately and the results are added.",
]


def make_requests(n: int, seed: int = 0) -> list[tuple[str, str, str]]:
    """(query, prompt, label) like OpenRLHF sends: half right, half wrong, ~1,500 characters of reasoning each."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        a, b = rng.randint(2, 999), rng.randint(2, 999)
        prompt = (f"<|im_start|>system\nPlease reason step by step, and put your final answer within \\boxed{{}}."
                  f"<|im_end|>\n<|im_start|>user\nWhat is ${a} + {b}$?<|im_end|>\n<|im_start|>assistant\n")  # fmt: skip
        steps = "\n".join(
            f"{rng.choice(SENTENCES)} Here ${rng.randint(2, 99)} \\cdot {rng.randint(2, 99)}$." for _ in range(20)
        )
        answer = a + b if i % 2 else a + b + rng.randint(1, 9)
        out.append(
            (
                prompt + steps + f"\nSo the answer is $\\boxed{{{answer}}}$." + EOS,
                prompt,
                encode_label(f"q{i % 1024}", str(a + b)),
            )
        )
    return out


def quantiles(latencies: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return q[49] * 1e3, q[98] * 1e3  # p50, p99 in ms


async def run_phase(call, requests: list, clients: int, rate: float | None) -> tuple[float, list[float]]:
    """Run `call(request)` for every request with `clients` workers: back to back, or each started no earlier than
    its slot at `rate` per second. Returns (wall seconds, latency of each request in seconds)."""
    latencies, todo = [], iter(enumerate(requests))
    start = time.perf_counter()

    async def worker():
        for i, req in todo:
            if rate:
                await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
            t = time.perf_counter()
            await call(req)
            latencies.append(time.perf_counter() - t)

    await asyncio.gather(*(worker() for _ in range(clients)))
    return time.perf_counter() - start, latencies


def start_server(log: Path, workers: int, samples_per_step: int, http: str = "h11") -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, str(SERVER), "--port", "0", "--rollout_log", str(log), "--workers", str(workers),
           "--samples_per_step", str(samples_per_step), "--http", http]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    m = re.search(r"(http://127\.0\.0\.1:\d+)/get_reward", line)
    if not m:
        proc.kill()
        raise SystemExit(f"error: the reward server did not start: {line!r}")
    return proc, m.group(1)


async def wait_healthy(url: str, seconds: float = 60) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        for _ in range(int(seconds * 10)):
            try:
                async with session.get(url + "/health") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise SystemExit(f"error: {url}/health never answered")


def openrlhf_call(url: str):
    """One sample through OpenRLHF 0.11.2's HTTP reward client (raises if it fails after its 5 tries)."""
    from openrlhf.utils.agent import SingleTurnAgentExecutor

    client = SingleTurnAgentExecutor(url + "/get_reward")

    async def call(req):
        query, prompt, label = req
        (reply,) = await client._fetch_rewards_via_http([query], [prompt], [label])
        assert len(reply["rewards"]) == 1

    return call


def empty_call(url: str):
    """OpenRLHF's request pattern (a new aiohttp session per request, same timeout) with empty lists, which the
    server answers without grading or logging; OpenRLHF's own method sends nothing for an empty batch."""
    import aiohttp

    async def call(_):
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=180)) as session:
            async with session.post(url + "/get_reward", json={"query": [], "prompts": [], "labels": []}) as resp:
                resp.raise_for_status()
                assert (await resp.json())["rewards"] == []

    return call


def keepalive_call(url: str, session):
    async def call(req):
        query, prompt, label = req
        async with session.post(
            url + "/get_reward", json={"query": [query], "prompts": [prompt], "labels": [label]}
        ) as r:
            r.raise_for_status()
            assert len((await r.json())["rewards"]) == 1

    return call


def direct_call(pool: GradingPool):
    async def call(req):
        query, prompt, label = req
        sample = make_sample(query, prompt, label)
        await asyncio.wrap_future(pool.submit(sample.response, sample.answer))

    return call


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (Linux); None where /proc is missing."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(name: str, call, requests: list, args, rate: float | None, server_pid: int | None) -> dict:
    cpu_before = cpu_seconds(server_pid) if server_pid else None
    wall, latencies = await run_phase(call, requests, args.clients, rate)
    cpu = cpu_seconds(server_pid) - cpu_before if cpu_before is not None else None
    p50, p99 = quantiles(latencies)
    row = {"phase": name, "requests": len(latencies), "req_per_s": len(latencies) / wall, "p50_ms": p50, "p99_ms": p99,
           "server_cpu_ms_per_req": None if cpu is None else cpu / len(latencies) * 1e3}  # fmt: skip
    cpu_text = "-" if cpu is None else f"{row['server_cpu_ms_per_req']:.2f}"
    print(
        f"| {name} | {row['requests']:,} | {row['req_per_s']:,.0f} | {p50:.2f} | {p99:.2f} | {cpu_text} |", flush=True
    )
    return row


async def bench(args, pool, url, server_pid: int) -> list[dict]:
    import aiohttp

    saturated = make_requests(args.requests, seed=1)
    paced = make_requests(args.paced_requests, seed=2)
    server, direct, floor = openrlhf_call(url), direct_call(pool), empty_call(url)
    print(f"\n{args.clients} clients, {pool.workers} grading workers on both sides, {os.cpu_count()} CPU cores\n")
    print("| phase | requests | req/s | p50 ms | p99 ms | server CPU ms/req |\n|---|---|---|---|---|---|")
    rows = [
        await measure("direct, saturated", direct, saturated, args, None, None),
        await measure("server, saturated", server, saturated, args, None, server_pid),
        await measure(f"direct, {args.rate:g}/s", direct, paced, args, args.rate, None),
        await measure(f"server, {args.rate:g}/s", server, paced, args, args.rate, server_pid),
    ]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=args.clients)) as session:
        keepalive = keepalive_call(url, session)
        rows.append(await measure(f"keep-alive, {args.rate:g}/s", keepalive, paced, args, args.rate, server_pid))
    rows.append(await measure(f"HTTP floor, {args.rate:g}/s", floor, paced, args, args.rate, server_pid))
    return rows


def compare_http(args) -> int:
    """The server's default parser (h11) against httptools, in the same run, alternating (httptools, h11) twice so
    that the machine's drift falls on both: saturated throughput and server CPU per request through OpenRLHF's
    client, and the HTTP floor (no grading). Each server writes its own log, checked at one line per request."""
    print("| parser | round | phase | requests | req/s | p50 ms | p99 ms | server CPU ms/req |")
    print("|---|---|---|---|---|---|---|---|")
    rows, ok = {"h11": [], "httptools": []}, True
    requests = make_requests(args.requests, seed=1)
    for round_ in (1, 2):
        for http in ("httptools", "h11"):
            with tempfile.TemporaryDirectory() as tmp:
                log = Path(tmp) / "rollouts.jsonl"
                proc, url = start_server(log, args.workers, 8192, http)
                try:
                    asyncio.run(wait_healthy(url))
                    print(f"| {http} | {round_} ", end="")
                    sat = asyncio.run(measure("saturated", openrlhf_call(url), requests, args, None, proc.pid))
                    print(f"| {http} | {round_} ", end="")
                    floor = asyncio.run(measure(f"HTTP floor, {args.rate:g}/s", empty_call(url),
                                                requests[: args.paced_requests], args, args.rate, proc.pid))  # fmt: skip
                finally:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(60)
                ok &= len(log.read_text().splitlines()) == args.requests
            rows[http].append((sat, floor))

    def mean(http, i, key):
        return statistics.fmean(r[i][key] for r in rows[http])

    print(f"\nh11 / httptools, saturated req/s: {mean('h11', 0, 'req_per_s') / mean('httptools', 0, 'req_per_s'):.3f}; "
          f"server CPU ms/req: {mean('h11', 0, 'server_cpu_ms_per_req') / mean('httptools', 0, 'server_cpu_ms_per_req'):.3f}; "
          f"HTTP floor p50: {mean('h11', 1, 'p50_ms') / mean('httptools', 1, 'p50_ms'):.3f}; "
          f"floor server CPU ms/req: {mean('h11', 1, 'server_cpu_ms_per_req') / mean('httptools', 1, 'server_cpu_ms_per_req'):.3f}")  # fmt: skip
    print(json.dumps(rows))
    return 0 if ok else 1


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=20_000, help="requests in each saturated phase")
    p.add_argument("--paced_requests", type=int, default=3_000, help="requests in each paced phase")
    p.add_argument("--rate", type=float, default=200.0, help="requests per second in the paced phases")
    p.add_argument("--clients", type=int, default=64)
    p.add_argument("--workers", type=int, default=os.cpu_count(), help="grading processes, on each side")
    p.add_argument("--compare_http", action="store_true", help="only compare the HTTP parsers (h11, httptools)")
    args = p.parse_args(argv)
    if args.compare_http:
        return compare_http(args)
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "rollouts.jsonl"
        proc, url = start_server(log, args.workers, samples_per_step=8192)
        try:
            with GradingPool(workers=args.workers) as pool:
                asyncio.run(wait_healthy(url))
                rows = asyncio.run(bench(args, pool, url, proc.pid))
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
        lines = len(log.read_text().splitlines())
    sent = args.requests + 2 * args.paced_requests
    sat_direct, sat_server, paced_direct, paced_server, keepalive, floor = rows
    print(
        f"\nserver throughput: {sat_server['req_per_s'] / sat_direct['req_per_s']:.2f}x the direct pool's (saturated)"
    )
    print(f"added latency at {args.rate:g}/s: p50 {paced_server['p50_ms'] - paced_direct['p50_ms']:+.2f} ms, "
          f"p99 {paced_server['p99_ms'] - paced_direct['p99_ms']:+.2f} ms")  # fmt: skip
    print(f"  from a keep-alive client: p50 {keepalive['p50_ms'] - paced_direct['p50_ms']:+.2f} ms, "
          f"p99 {keepalive['p99_ms'] - paced_direct['p99_ms']:+.2f} ms")  # fmt: skip
    print(f"  the HTTP floor alone (OpenRLHF's request pattern, transport, framework; no grading): p50 "
          f"{floor['p50_ms']:.2f} ms, p99 {floor['p99_ms']:.2f} ms")  # fmt: skip
    print(f"added latency saturated: p50 {sat_server['p50_ms'] - sat_direct['p50_ms']:+.2f} ms")
    print(f"rollout log: {lines:,} lines for {sent:,} requests" + ("" if lines == sent else "  <-- MISMATCH"))
    print(json.dumps({"rows": rows, "log_lines": lines, "requests": sent}))
    return 0 if lines == sent else 1


if __name__ == "__main__":
    raise SystemExit(main())
