"""Online serving benchmark, following vLLM's ``vllm bench serve`` method, against ``aisd serve`` over HTTP.

A server process is started on a free port; a streaming client (httpx, asyncio) sends requests with Poisson
arrivals (exponential inter-arrival gaps, seeded) at each request rate of a sweep, ``inf`` meaning all at once.
Prompts are random token ids of a fixed length and outputs have a fixed length (``ignore_eos``), like vLLM's
``random`` dataset, so every rate does the same work. Per rate: request/s, output tok/s, TTFT / TPOT / ITL p50 and
p99, and goodput (requests/s meeting the SLO: TTFT and TPOT both under their limits, vLLM's ``--goodput``).

Baseline measured in the same run: the same server fed one request at a time (concurrency 1), i.e. serving without
batching; every rate's output tok/s and TTFT are also given as ratios against it.

    python bench/engine_serving.py            # full sweep (several minutes on 2 cores)
    python bench/engine_serving.py --quick    # 8 requests at 2 rates
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import numpy as np

from aisd.app.demo_engine import free_port, stop_server, wait_ready

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class RequestResult:
    ok: bool
    ttft: float = 0.0
    e2e: float = 0.0
    itls: list[float] = field(default_factory=list)
    output_tokens: int = 0
    error: str = ""

    @property
    def tpot(self) -> float:
        """Time per output token after the first (vLLM's TPOT)."""
        return (self.e2e - self.ttft) / (self.output_tokens - 1) if self.output_tokens > 1 else 0.0


@dataclass
class RateResult:
    rate: str
    num_requests: int
    completed: int
    duration_s: float
    request_throughput: float
    output_throughput: float
    ttft_p50_ms: float
    ttft_p99_ms: float
    tpot_p50_ms: float
    tpot_p99_ms: float
    itl_p50_ms: float
    itl_p99_ms: float
    goodput: float
    throughput_vs_sequential: float = 0.0
    ttft_p50_vs_sequential: float = 0.0


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000 if values else float("nan")


def summarize(rate: str, results: list[RequestResult], duration: float, slo_ttft: float,
              slo_tpot: float) -> RateResult:
    done = [r for r in results if r.ok]
    good = [r for r in done if r.ttft <= slo_ttft and r.tpot <= slo_tpot]
    itls = [x for r in done for x in r.itls]
    return RateResult(
        rate=rate, num_requests=len(results), completed=len(done), duration_s=round(duration, 2),
        request_throughput=len(done) / duration, output_throughput=sum(r.output_tokens for r in done) / duration,
        ttft_p50_ms=pct([r.ttft for r in done], 50), ttft_p99_ms=pct([r.ttft for r in done], 99),
        tpot_p50_ms=pct([r.tpot for r in done], 50), tpot_p99_ms=pct([r.tpot for r in done], 99),
        itl_p50_ms=pct(itls, 50), itl_p99_ms=pct(itls, 99), goodput=len(good) / duration)


async def one_request(client: httpx.AsyncClient, url: str, prompt: list[int], output_len: int) -> RequestResult:
    body = {"prompt": prompt, "max_tokens": output_len, "temperature": 0.0, "ignore_eos": True, "stream": True,
            "stream_options": {"include_usage": True}}
    t0 = time.perf_counter()
    last = None
    res = RequestResult(ok=False)
    try:
        async with client.stream("POST", url, json=body) as r:
            if r.status_code != 200:
                await r.aread()
                return RequestResult(ok=False, error=f"{r.status_code}: {r.text[:200]}")
            async for line in r.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                now = time.perf_counter()
                if chunk.get("usage"):
                    res.output_tokens = chunk["usage"]["completion_tokens"]
                if any(c.get("text") for c in chunk.get("choices", [])):
                    if last is None:
                        res.ttft = now - t0
                    else:
                        res.itls.append(now - last)
                    last = now
        res.e2e = time.perf_counter() - t0
        res.ok = res.output_tokens > 0
    except httpx.HTTPError as e:
        res.error = str(e)
    return res


async def run_rate(base: str, prompts: list[list[int]], output_len: int, rate: float,
                   seed: int) -> tuple[list[RequestResult], float]:
    """Send ``prompts`` with Poisson arrivals at ``rate`` requests/s (inf = all at once)."""
    rng = random.Random(seed)
    url = f"{base}/v1/completions"
    async with httpx.AsyncClient(timeout=httpx.Timeout(600.0), limits=httpx.Limits(max_connections=1000)) as client:
        tasks = []
        t0 = time.perf_counter()
        for p in prompts:
            tasks.append(asyncio.create_task(one_request(client, url, p, output_len)))
            if rate != float("inf"):
                await asyncio.sleep(rng.expovariate(rate))
        results = await asyncio.gather(*tasks)
        return list(results), time.perf_counter() - t0


async def run_sequential(base: str, prompts: list[list[int]], output_len: int) -> tuple[list[RequestResult], float]:
    url = f"{base}/v1/completions"
    async with httpx.AsyncClient(timeout=httpx.Timeout(600.0)) as client:
        t0 = time.perf_counter()
        results = [await one_request(client, url, p, output_len) for p in prompts]
        return results, time.perf_counter() - t0


def start_server(port: int, max_num_seqs: int, threads: int | None, log: Path) -> subprocess.Popen:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", AISD_HOME=tempfile.mkdtemp(),
               AISD_ENGINE__LOAD_ON_STARTUP="true", AISD_ENGINE__MAX_NUM_SEQS=str(max_num_seqs),
               AISD_ENGINE__MAX_WAITING_REQUESTS="100000")
    if threads:
        env["AISD_ENGINE__NUM_THREADS"] = str(threads)
    cmd = [sys.executable, "-m", "aisd.app", "serve", "--host", "127.0.0.1", "--port", str(port), "--log-level",
           "warning"]
    return subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)


def random_prompts(n: int, length: int, seed: int) -> list[list[int]]:
    rng = random.Random(seed)
    # Ids from the middle of the 49,152-token vocabulary: ordinary word pieces, no special tokens.
    return [[rng.randrange(1000, 40000) for _ in range(length)] for _ in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small run: 8 requests at rates 1 and inf")
    ap.add_argument("--num-prompts", type=int, default=32)
    ap.add_argument("--input-len", type=int, default=128)
    ap.add_argument("--output-len", type=int, default=64)
    ap.add_argument("--rates", default="0.5,1,2,4,inf", help="comma-separated request rates (req/s); inf = burst")
    ap.add_argument("--sequential-prompts", type=int, default=4, help="requests in the one-at-a-time baseline")
    ap.add_argument("--max-num-seqs", type=int, default=32)
    ap.add_argument("--threads", type=int, default=None, help="torch threads of the server (default: all cores)")
    ap.add_argument("--slo-ttft", type=float, default=2.0, help="goodput SLO on time to first token, seconds")
    ap.add_argument("--slo-tpot", type=float, default=0.25, help="goodput SLO on time per output token, seconds")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.quick:
        args.num_prompts, args.rates, args.output_len, args.sequential_prompts = 8, "1,inf", 32, 2
    rates = [float(r) for r in args.rates.split(",")]

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = Path(tempfile.mkdtemp()) / "serve.log"
    proc = start_server(port, args.max_num_seqs, args.threads, log)
    rows: list[RateResult] = []
    try:
        wait_ready(base, proc, log, timeout=600)
        prompts = random_prompts(args.num_prompts, args.input_len, args.seed)
        asyncio.run(run_sequential(base, prompts[:1], 4))  # warm-up
        seq_results, seq_dur = asyncio.run(run_sequential(base, prompts[: args.sequential_prompts], args.output_len))
        seq = summarize("sequential (1 at a time)", seq_results, seq_dur, args.slo_ttft, args.slo_tpot)
        rows.append(seq)
        for i, rate in enumerate(rates):
            batch = random_prompts(args.num_prompts, args.input_len, args.seed + 1 + i)  # no prefix-cache reuse
            results, dur = asyncio.run(run_rate(base, batch, args.output_len, rate, args.seed + i))
            row = summarize(f"{rate:g} req/s" if rate != float("inf") else "inf (burst)", results, dur,
                            args.slo_ttft, args.slo_tpot)
            rows.append(row)
        for row in rows:
            row.throughput_vs_sequential = row.output_throughput / seq.output_throughput
            row.ttft_p50_vs_sequential = row.ttft_p50_ms / seq.ttft_p50_ms
        stats = httpx.get(f"{base}/health").json().get("engine", {})
    finally:
        stop_server(proc, timeout=20)

    machine = {"cpu_cores": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
               "load_avg_1m": os.getloadavg()[0]}
    print(f"\naisd serve, smollm2-135m-instruct, {args.num_prompts} requests/rate, input {args.input_len} tokens, "
          f"output {args.output_len} tokens (ignore_eos), max_num_seqs {args.max_num_seqs}; "
          f"SLO TTFT <= {args.slo_ttft}s and TPOT <= {args.slo_tpot}s; {machine['cpu_cores']} cores, "
          f"load avg {machine['load_avg_1m']:.1f}")
    head = (f"{'rate':>22} {'done':>5} {'req/s':>6} {'out tok/s':>9} {'x seq':>6} {'TTFT p50':>9} {'p99':>8} "
            f"{'TPOT p50':>9} {'p99':>7} {'ITL p50':>8} {'p99':>7} {'goodput':>8}")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r.rate:>22} {r.completed:>5} {r.request_throughput:6.2f} {r.output_throughput:9.1f} "
              f"{r.throughput_vs_sequential:6.2f} {r.ttft_p50_ms:8.0f}ms {r.ttft_p99_ms:6.0f}ms "
              f"{r.tpot_p50_ms:7.0f}ms {r.tpot_p99_ms:5.0f}ms {r.itl_p50_ms:6.0f}ms {r.itl_p99_ms:5.0f}ms "
              f"{r.goodput:8.2f}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / ("engine_serving_quick.json" if args.quick else "engine_serving.json")
    out.write_text(json.dumps({"benchmark": "engine_serving", "args": vars(args), "machine": machine,
                               "baseline": "sequential: the same server, one request at a time",
                               "engine_stats_after": stats, "rows": [asdict(r) for r in rows]}, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
