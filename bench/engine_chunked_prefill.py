"""Chunked prefill: inter-token latency (p99) of running streams while a 2,000-token prompt arrives.

Without chunking, the step that takes a long prompt computes all of it before the running decodes get their next
token, so every stream stalls for the whole prefill (vLLM's motivation for chunked prefill, after Sarathi-Serve,
Agrawal et al. 2024). With chunking, the prompt is split into pieces that fit ``max_num_batched_tokens`` next to
the decodes, so streams keep ticking. ``--streams`` short requests decode; once each has ``--warm`` tokens the long
prompt is added; ITLs of the streams are recorded from that moment until they have ``--window`` more tokens.

Chunks are capped by the scheduler's FLOP model (``PrefillCost``): a later chunk attends to more context, so it
gets fewer tokens and each step costs about what a budget-sized chunk without context costs. The chunk sizes the
long prompt got are recorded.

Baseline (same run): the same engine with ``enable_chunked_prefill=False`` (its token budget must hold the whole
prompt). Reported, per token budget with chunking: ITL p50 / p99 / max of the streams and the long prompt's TTFT
(chunking delays it a little: the decodes run with every chunk). Settings are interleaved run by run.

    python bench/engine_chunked_prefill.py                       # 3 runs per setting, budgets 512 and 256
    python bench/engine_chunked_prefill.py --chunk-budgets 512   # only the default budget
    python bench/engine_chunked_prefill.py --quick               # 1 run, fewer streams, budget 512
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import time
from pathlib import Path

import numpy as np

from aisd.engine.config import EngineConfig
from aisd.engine.llm_engine import LLMEngine
from aisd.engine.sampling import SamplingParams

RESULTS = Path(__file__).resolve().parent / "results"


def ids(rng: random.Random, n: int) -> list[int]:
    return [rng.randrange(1000, 40000) for _ in range(n)]


def one_run(engine: LLMEngine, rng: random.Random, streams: int, warm: int, window: int, long_len: int,
            tag: str) -> dict:
    params = SamplingParams(temperature=0, max_tokens=warm + window + 64, ignore_eos=True)
    names = [f"{tag}-s{i}" for i in range(streams)]
    for name in names:
        engine.add_request(name, ids(rng, 32), params)
    counts = dict.fromkeys(names, 0)
    stamps: dict[str, list[float]] = {n: [] for n in names}
    long_id, long_added, long_ttft = f"{tag}-long", None, None
    chunks: list[int] = []
    while True:
        if long_added is not None and long_ttft is None:
            waiting = [x for x in engine.scheduler.running if x.request.request_id == long_id]
            before = waiting[0].num_computed_tokens if waiting else 0
        outs = engine.step()
        if long_added is not None and long_ttft is None:
            req = engine.requests.get(long_id)
            if req is not None and req.seqs:
                done = min(req.seqs[0].num_computed_tokens, long_len) - before
                if done > 0:
                    chunks.append(done)
        now = time.perf_counter()
        for out in outs:
            n = len(out.outputs[0].token_ids)
            if out.request_id in counts and n > counts[out.request_id]:
                counts[out.request_id] = n
                stamps[out.request_id].append(now)
            elif out.request_id == long_id and n and long_ttft is None:
                long_ttft = now - long_added
        if long_added is None and min(counts.values()) >= warm:
            long_added = time.perf_counter()
            engine.add_request(long_id, ids(rng, long_len), SamplingParams(temperature=0, max_tokens=4,
                                                                           ignore_eos=True))
            base = dict(counts)
        if long_added is not None and long_ttft is not None and all(counts[n] >= base[n] + window for n in names):
            break
    engine.abort_request([*names, long_id])
    while engine.has_unfinished_requests():
        engine.step()
    itls = []
    for n in names:  # gaps between consecutive tokens that arrived after the long prompt did
        ts = [t for t in stamps[n] if t >= long_added]
        prev = max((t for t in stamps[n] if t < long_added), default=None)
        seq = ([prev] if prev is not None else []) + ts
        itls += [b - a for a, b in zip(seq, seq[1:], strict=False)]
    return {"itl_p50_ms": float(np.percentile(itls, 50)) * 1000, "itl_p99_ms": float(np.percentile(itls, 99)) * 1000,
            "itl_max_ms": max(itls) * 1000, "long_ttft_ms": long_ttft * 1000, "num_itls": len(itls),
            "long_prompt_chunks": chunks}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--streams", type=int, default=8)
    ap.add_argument("--warm", type=int, default=4)
    ap.add_argument("--window", type=int, default=24)
    ap.add_argument("--long-len", type=int, default=2000)
    ap.add_argument("--chunk-budgets", default="512,256",
                    help="comma-separated max_num_batched_tokens values to run with chunking (512 is the default)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.quick:
        args.runs, args.streams, args.window, args.chunk_budgets = 1, 4, 8, "512"
    budgets = [int(b) for b in args.chunk_budgets.split(",")]
    max_len = args.long_len + 256
    load_start = os.getloadavg()[0]
    common = dict(max_model_len=max_len, kv_cache_memory_gb=0.5, num_threads=args.threads, enable_prefix_caching=False)
    t0 = time.perf_counter()
    engines = {
        "chunked prefill off": LLMEngine(EngineConfig(enable_chunked_prefill=False, max_num_batched_tokens=max_len,
                                                      **common)).load(),
        **{f"chunked prefill on, budget {b}": LLMEngine(EngineConfig(enable_chunked_prefill=True,
                                                                     max_num_batched_tokens=b, **common)).load()
           for b in budgets},
    }
    print(f"loaded two engines in {time.perf_counter() - t0:.1f} s")
    rng = random.Random(args.seed)
    runs: dict[str, list[dict]] = {k: [] for k in engines}
    for name, eng in engines.items():  # warm-up: allocate buffers, touch the weights
        one_run(eng, rng, 2, 2, 2, 256, f"warm-{name}")
    for r in range(args.runs):
        for name, eng in engines.items():
            res = one_run(eng, rng, args.streams, args.warm, args.window, args.long_len, f"r{r}-{name}")
            runs[name].append(res)
            print(f"run {r} {name}: ITL p99 {res['itl_p99_ms']:.0f} ms, max {res['itl_max_ms']:.0f} ms, "
                  f"long-prompt TTFT {res['long_ttft_ms']:.0f} ms, chunks {res['long_prompt_chunks']}")

    med = {name: {k: statistics.median(x[k] for x in rs) for k in rs[0] if k != "long_prompt_chunks"}
           for name, rs in runs.items()}
    off = med["chunked prefill off"]
    machine = {"cpu_cores": os.cpu_count(), "torch_threads": args.threads or os.cpu_count(),
               "platform": platform.platform(), "load_avg_1m": os.getloadavg()[0], "load_avg_1m_start": load_start}
    print(f"\nchunked prefill, smollm2-135m-instruct: {args.streams} streams decoding while a {args.long_len}-token "
          f"prompt arrives; medians of {args.runs} runs; {machine['cpu_cores']} cores, {machine['torch_threads']} "
          f"threads, load avg {load_start:.1f} -> {machine['load_avg_1m']:.1f} (shared machine)")
    for b in budgets:
        on = med[f"chunked prefill on, budget {b}"]
        print(f"\n{'measure (ms), budget ' + str(b):<28} {'off (baseline)':>15} {'on':>10} {'off / on':>9}")
        print("-" * 66)
        for key, label in (("itl_p50_ms", "stream ITL p50"), ("itl_p99_ms", "stream ITL p99"),
                           ("itl_max_ms", "stream ITL max"), ("long_ttft_ms", "long prompt TTFT")):
            print(f"{label:<28} {off[key]:15.0f} {on[key]:10.0f} {off[key] / on[key]:8.2f}x")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / ("engine_chunked_prefill_quick.json" if args.quick else "engine_chunked_prefill.json")
    out.write_text(json.dumps({"benchmark": "engine_chunked_prefill", "args": vars(args), "machine": machine,
                               "runs": runs, "median": med,
                               "itl_p99_reduction": {b: off["itl_p99_ms"] / med[f"chunked prefill on, budget {b}"]
                                                     ["itl_p99_ms"] for b in budgets}}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
