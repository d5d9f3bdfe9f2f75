"""Prefix caching: TTFT with a shared 1,024-token system prompt, cold vs warm; throughput cost at a 0% hit rate.

1. TTFT. For each trial a fresh 1,024-token "system prompt" (random token ids, so trials never share blocks) is
   followed by a short user turn. The first request with it is cold (every block computed); a second request with
   the same system prompt and another user turn is warm (64 full blocks of 16 come from the cache). TTFT is measured
   in process, from ``add_request`` to the step that returns the first token. Ratio = median cold / median warm.
2. Cost at 0% hits. The same batch of unique random prompts (no shared prefix: nothing to reuse) runs on an engine
   with prefix caching and on one without; output tok/s on vs off (hashing full blocks and keeping the LRU list is
   the only extra work). The runs are interleaved in ABBA order (off, on, on, off, off, on, ...) so a drift in machine
   load hits both engines alike; reported: the median of each engine's tok/s and the median of the per-pair ratios
   (each "on" run divided by the "off" run next to it), the cost being 1 - that ratio. ``--aa-control`` adds a second
   caching-off engine to the rotation: its ratio to the first is the noise floor of the comparison.
   Because that noise floor (a few %) is larger than the 2% target, the cost is also measured directly: the two
   methods that only run with caching on (``BlockManager.match_prefix``, ``register_full_blocks``: block hashing,
   cache lookups, LRU bookkeeping) are timed inside the "on" engine's runs, timer overhead included, as a share of
   those runs' wall time - an upper bound of the extra work that does not depend on the machine's load drift.

    python bench/engine_prefix_cache.py           # 5 TTFT trials, 6 throughput runs per engine of 16 x (256 in, 32 out)
    python bench/engine_prefix_cache.py --quick   # 3 trials, 2 runs per engine of 8 x (128 in, 16 out)
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

from aisd.engine.config import EngineConfig
from aisd.engine.llm_engine import LLMEngine
from aisd.engine.sampling import SamplingParams

RESULTS = Path(__file__).resolve().parent / "results"


def ids(rng: random.Random, n: int) -> list[int]:
    return [rng.randrange(1000, 40000) for _ in range(n)]


def time_prefix_caching_code(engine: LLMEngine) -> dict[str, float]:
    """Wrap the engine's caching-only BlockManager methods with timers; returns the live totals."""
    acc = {"spent": 0.0, "wall": 0.0, "calls": 0}
    bm = engine.block_manager
    for name in ("match_prefix", "register_full_blocks"):
        original = getattr(bm, name)

        def timed(*a, _f=original, **k):  # noqa: ANN002, ANN003, ANN202
            t = time.perf_counter()
            try:
                return _f(*a, **k)
            finally:
                acc["spent"] += time.perf_counter() - t
                acc["calls"] += 1

        setattr(bm, name, timed)
    return acc


def ttft(engine: LLMEngine, rid: str, prompt: list[int]) -> tuple[float, int]:
    """Seconds from add_request to the first generated token, and the prompt tokens served from the cache."""
    t0 = time.perf_counter()
    engine.add_request(rid, prompt, SamplingParams(temperature=0, max_tokens=1))
    while True:
        for out in engine.step():
            if out.request_id == rid and out.outputs[0].token_ids:
                elapsed = time.perf_counter() - t0
                while engine.has_unfinished_requests():
                    engine.step()
                return elapsed, out.num_cached_tokens


def throughput(engine: LLMEngine, prompts: list[list[int]], output_len: int, tag: str) -> float:
    params = SamplingParams(temperature=0, max_tokens=output_len, ignore_eos=True)
    t0 = time.perf_counter()
    for i, p in enumerate(prompts):
        engine.add_request(f"{tag}-{i}", p, params)
    tokens = 0
    while engine.has_unfinished_requests():
        for out in engine.step():
            if out.finished:
                tokens += len(out.outputs[0].token_ids)
    return tokens / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--system-len", type=int, default=1024)
    ap.add_argument("--user-len", type=int, default=24)
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--runs", type=int, default=6, help="throughput runs per engine (ABBA order)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--prompt-len", type=int, default=256)
    ap.add_argument("--output-len", type=int, default=32)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--aa-control", action="store_true",
                    help="also run a second caching-off engine in the rotation (A/A control: the noise floor)")
    args = ap.parse_args()
    if args.quick:
        args.trials, args.runs, args.batch, args.prompt_len, args.output_len = 3, 2, 8, 128, 16
    rng = random.Random(args.seed)
    load_start = os.getloadavg()[0]
    common = dict(max_model_len=2048, kv_cache_memory_gb=0.5, num_threads=args.threads, max_num_seqs=32)
    t0 = time.perf_counter()
    on = LLMEngine(EngineConfig(enable_prefix_caching=True, **common)).load()
    off = LLMEngine(EngineConfig(enable_prefix_caching=False, **common)).load()
    # A/A control: a second caching-off engine run in the same rotation; its ratio to ``off`` is the noise floor
    off2 = LLMEngine(EngineConfig(enable_prefix_caching=False, **common)).load() if args.aa_control else None
    print(f"loaded two engines in {time.perf_counter() - t0:.1f} s")

    ttft(on, "warmup", ids(rng, 64))
    ttft(off, "warmup", ids(rng, 64))
    cold, warm, cached = [], [], []
    for t in range(args.trials):
        system = ids(rng, args.system_len)
        c, _ = ttft(on, f"cold-{t}", system + ids(rng, args.user_len))
        w, hit = ttft(on, f"warm-{t}", system + ids(rng, args.user_len))
        cold.append(c)
        warm.append(w)
        cached.append(hit)
        print(f"trial {t}: cold {c * 1000:.0f} ms, warm {w * 1000:.0f} ms ({hit} cached tokens)")

    tp_on, tp_off, pair_ratios, aa_ratios = [], [], [], []
    hits_before = on.get_stats().prefix_cache_hits
    inside = time_prefix_caching_code(on)
    for r in range(args.runs):
        prompts = [ids(rng, args.prompt_len) for _ in range(args.batch)]  # unique: 0% hit rate
        # ABBA: even runs off first, odd runs on first, so a load drift does not favour one engine
        order = [("off", off), ("on", on)] if r % 2 == 0 else [("on", on), ("off", off)]
        if off2 is not None:
            order.insert(r % 3, ("off2", off2))
        got = {}
        for name, eng in order:
            t_run = time.perf_counter()
            got[name] = throughput(eng, prompts, args.output_len, f"{name}-{r}")
            if name == "on":
                inside["wall"] += time.perf_counter() - t_run
        tp_off.append(got["off"])
        tp_on.append(got["on"])  # same prompts, new to this engine's cache
        pair_ratios.append(got["on"] / got["off"])
        if off2 is not None:
            aa_ratios.append(got["off2"] / got["off"])
        print(f"run {r} ({order[0][0]} first): caching off {got['off']:.1f} tok/s, on {got['on']:.1f} tok/s, "
              f"on/off {pair_ratios[-1]:.3f}")
    hits_in_tp = on.get_stats().prefix_cache_hits - hits_before
    direct_pct = 100 * inside["spent"] / inside["wall"]

    cold_ms, warm_ms = statistics.median(cold) * 1000, statistics.median(warm) * 1000
    med_on, med_off = statistics.median(tp_on), statistics.median(tp_off)
    med_pair = statistics.median(pair_ratios)
    if aa_ratios:
        print(f"A/A control (two caching-off engines): median off2/off {statistics.median(aa_ratios):.3f}, "
              f"spread {min(aa_ratios):.3f}-{max(aa_ratios):.3f}")
    machine = {"cpu_cores": os.cpu_count(), "torch_threads": args.threads or os.cpu_count(),
               "platform": platform.platform(), "load_avg_1m": os.getloadavg()[0], "load_avg_1m_start": load_start}
    print(f"\nprefix caching, smollm2-135m-instruct, {machine['cpu_cores']} cores, load avg "
          f"{machine['load_avg_1m']:.1f} (shared machine)")
    print(f"{'measure':<46} {'baseline':>12} {'aisd':>12} {'ratio':>8}")
    print("-" * 82)
    print(f"{'TTFT, ' + str(args.system_len) + '-token shared prefix (cold -> warm)':<46} {cold_ms:10.0f}ms "
          f"{warm_ms:10.0f}ms {cold_ms / warm_ms:7.1f}x")
    print(f"{'output tok/s at 0% hits (caching off -> on)':<46} {med_off:12.1f} {med_on:12.1f} "
          f"{med_on / med_off:8.3f}")
    print(f"{'median of paired on/off ratios':<46} {'':>12} {'':>12} {med_pair:8.3f}")
    print(f"cost of prefix caching at 0% hits: {100 * (1 - med_pair):+.1f}% (median paired ratio; "
          f"ratio of medians {100 * (1 - med_on / med_off):+.1f}%; spread of pairs "
          f"{min(pair_ratios):.3f}-{max(pair_ratios):.3f}; cache hits during that workload: {hits_in_tp} tokens)")
    print(f"direct: prefix-caching code timed inside the caching-on runs: {inside['spent'] * 1000:.1f} ms of "
          f"{inside['wall'] * 1000:.0f} ms = {direct_pct:.2f}% ({inside['calls']} calls, timer overhead included)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / ("engine_prefix_cache_quick.json" if args.quick else "engine_prefix_cache.json")
    out.write_text(json.dumps({
        "benchmark": "engine_prefix_cache", "args": vars(args), "machine": machine,
        "ttft": {"cold_ms": [c * 1000 for c in cold], "warm_ms": [w * 1000 for w in warm], "cached_tokens": cached,
                 "median_cold_ms": cold_ms, "median_warm_ms": warm_ms, "speedup": cold_ms / warm_ms},
        "zero_hit_throughput": {"off_tok_s": tp_off, "on_tok_s": tp_on, "median_off": med_off, "median_on": med_on,
                                "ratio_on_over_off": med_on / med_off, "pair_ratios": pair_ratios,
                                "median_pair_ratio": med_pair, "aa_control_ratios": aa_ratios,
                                "cost_pct": 100 * (1 - med_pair),
                                "direct_cost_pct": direct_pct, "direct_spent_s": inside["spent"],
                                "direct_wall_s": inside["wall"], "direct_calls": inside["calls"],
                                "hits_tokens": hits_in_tp},
    }, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
