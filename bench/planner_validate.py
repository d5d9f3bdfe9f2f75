"""Benchmark: does the planner's roofline model predict real decode speed on this machine?

Baselines measured in the same run: this host's memory read bandwidth (numpy, large array sum) and matmul
throughput (torch fp32 GEMM). They become a ``GPUSpec`` for the CPU; the planner then predicts the decode step time of
the bundled SmolLM2-135M (fp32 weights, read from its GGUF header) at several batch sizes, and a plain KV-cached decode
loop over the same model in transformers measures it. Reported: measured / predicted per batch (1.0 = exact), plus
the KV cache bytes the real cache holds / the planner's GQA formula (must be 1.00) and the seed's hidden_dim formula
overstatement for this model (heads 9 / KV heads 3 = 3x).

Usage: python bench/planner_validate.py [--quick]     (writes bench/results/planner_validate.json)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402

from aisd.assets import resolve  # noqa: E402
from aisd.planner import (  # noqa: E402
    GPUSpec,
    decode_estimate,
    kv_bytes_per_token,
    kv_bytes_per_token_hidden,
    load_measured,
    model_config,
    weight_bytes,
)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def measure_bandwidth_gbs(repeats: int, mib: int = 512) -> float:
    """Median read bandwidth of summing a large float32 array (bytes read / seconds)."""
    a = np.ones(mib * 2**20 // 4, dtype=np.float32)
    a.sum()  # touch the pages
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a.sum()
        times.append(time.perf_counter() - t0)
    return a.nbytes / statistics.median(times) / 1e9


def measure_tflops(torch, repeats: int, n: int = 1024) -> float:
    x, y = torch.randn(n, n), torch.randn(n, n)
    x @ y
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        x @ y
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times) / 1e12


def decode_step_ms(torch, model, batch: int, prompt: int, steps: int) -> tuple[float, int]:
    """Median wall time of one KV-cached decode step for ``batch`` sequences after a ``prompt``-token prefill."""
    ids = torch.randint(10, 1000, (batch, prompt))
    with torch.no_grad():
        out = model(ids, use_cache=True)
        past = out.past_key_values
        nxt = out.logits[:, -1:].argmax(-1)
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            out = model(nxt, past_key_values=past, use_cache=True)
            times.append(time.perf_counter() - t0)
            past = out.past_key_values
            nxt = out.logits[:, -1:].argmax(-1)
    return statistics.median(times) * 1e3, prompt + steps // 2


def cache_bytes_per_token(past, layers: int, tokens: int) -> float:
    total = 0
    for i in range(layers):
        k, v = past.layers[i].keys, past.layers[i].values
        total += k.numel() * k.element_size() + v.numel() * v.element_size()
    return total / tokens


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small run: batches 1 and 8, 8 decode steps")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()

    import torch
    import transformers

    torch.set_num_threads(args.threads)
    transformers.utils.logging.disable_progress_bar()
    repeats = 3 if args.quick else 7
    batches = [1, 8] if args.quick else [1, 4, 16, 32]
    steps = 8 if args.quick else 24
    prompt = 64

    gguf = resolve("smollm2-135m-instruct")
    cfg = model_config(gguf)
    bw = measure_bandwidth_gbs(repeats)
    tflops = measure_tflops(torch, repeats)
    host = GPUSpec(id="this-host", name=f"{platform.processor() or platform.machine()} x{args.threads} threads",
                   memory_mib=16 * 1024, bandwidth_gbs=bw, fp16_tflops=tflops, gpus_per_node=1)

    t0 = time.perf_counter()
    model = transformers.AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                              dtype=torch.float32).eval()
    load_s = time.perf_counter() - t0
    assert sum(p.numel() for p in model.parameters()) == cfg.params

    rows = []
    for b in batches:
        # re-measure the baselines right before each row: on a shared machine the load changes minute to minute
        bw_b, tf_b = measure_bandwidth_gbs(repeats), measure_tflops(torch, repeats)
        host_b = GPUSpec(id="this-host", name=host.name, memory_mib=host.memory_mib, bandwidth_gbs=bw_b,
                         fp16_tflops=tf_b, gpus_per_node=1)
        measured, ctx = decode_step_ms(torch, model, b, prompt, steps)
        est = decode_estimate(cfg, host_b, "fp32", batch=b, context=ctx, kv_dtype="fp32",
                              bandwidth_efficiency=1.0, mfu=1.0)
        rows.append({"batch": b, "context": ctx, "memory_read_gbs": bw_b, "gemm_tflops": tf_b,
                     "measured_ms": measured, "predicted_ms": est.step_time_s * 1e3,
                     "ratio_measured_over_predicted": measured / (est.step_time_s * 1e3), "bound": est.bound,
                     "measured_tok_s": b * 1e3 / measured, "predicted_tok_s": est.tokens_per_s_total})

    with torch.no_grad():
        out = model(torch.randint(10, 1000, (1, prompt)), use_cache=True)
    kv_measured = cache_bytes_per_token(out.past_key_values, cfg.num_layers, prompt)
    kv_pred = kv_bytes_per_token(cfg, "fp32")

    # aisd's own engine, when its serving benchmark has been run: its single-request TPOT against the same prediction
    engine_rows = []
    for f in sorted(RESULTS.glob("engine_*.json")):
        try:
            m = load_measured(f)
        except Exception as e:  # noqa: BLE001 - a partial or foreign file: report and go on
            print(f"skipping {f.name}: {e}")
            continue
        if m.tpot_ms is None:
            continue
        ctx = (m.prompt_tokens or prompt) + 16
        est = decode_estimate(cfg, host, "fp32", batch=1, context=ctx, kv_dtype="fp32", bandwidth_efficiency=1.0,
                              mfu=1.0)
        engine_rows.append({"file": f.name, "measured_tpot_ms": m.tpot_ms, "predicted_ms": est.step_time_s * 1e3,
                            "ratio_measured_over_predicted": m.tpot_ms / (est.step_time_s * 1e3)})

    print(f"machine: {os.cpu_count()} cores ({args.threads} threads used), shared and loaded by other jobs; "
          f"python {sys.version.split()[0]}, torch {torch.__version__}")
    print(f"baselines at start: memory read {bw:.1f} GB/s, fp32 GEMM {tflops * 1e3:.1f} GFLOP/s (median of {repeats}); "
          f"re-measured before every row (columns GB/s, GFLOP/s)")
    print(f"model: {cfg.id} from GGUF header, {cfg.params:,} params, fp32 weights {weight_bytes(cfg, 'fp32') / 1e6:.0f}"
          f" MB, loaded in {load_s:.1f} s")
    print()
    print(f"{'batch':>5} {'ctx':>5} {'GB/s':>6} {'GFLOP/s':>8} {'measured ms':>12} {'predicted ms':>13} "
          f"{'meas/pred':>10} {'bound':>7} {'meas tok/s':>11} {'pred tok/s':>11}")
    for r in rows:
        print(f"{r['batch']:>5} {r['context']:>5} {r['memory_read_gbs']:>6.1f} {r['gemm_tflops'] * 1e3:>8.1f} "
              f"{r['measured_ms']:>12.2f} {r['predicted_ms']:>13.2f} "
              f"{r['ratio_measured_over_predicted']:>10.2f} {r['bound']:>7} {r['measured_tok_s']:>11.1f} "
              f"{r['predicted_tok_s']:>11.1f}")
    for r in engine_rows:
        print(f"aisd engine ({r['file']}, its own run): TPOT p50 {r['measured_tpot_ms']:.2f} ms vs predicted "
              f"{r['predicted_ms']:.2f} ms at batch 1 -> {r['ratio_measured_over_predicted']:.2f}x")
    print()
    print(f"KV bytes/token: real cache {kv_measured:,.0f} / planner GQA formula {kv_pred:,} = "
          f"{kv_measured / kv_pred:.2f}; seed hidden_dim formula {kv_bytes_per_token_hidden(cfg, 'fp32'):,} "
          f"= {kv_bytes_per_token_hidden(cfg, 'fp32') / kv_measured:.2f}x the real cache")

    RESULTS.mkdir(parents=True, exist_ok=True)
    out_path = RESULTS / "planner_validate.json"
    out_path.write_text(json.dumps({
        "machine": {"cores": os.cpu_count(), "threads": args.threads, "loaded": True,
                    "memory_read_gbs": bw, "fp32_gemm_tflops": tflops, "torch": torch.__version__},
        "model": {"id": cfg.id, "params": cfg.params, "precision": "fp32", "source": "bundled GGUF header"},
        "quick": args.quick, "prompt_tokens": prompt, "decode_steps": steps, "rows": rows,
        "engine_rows": engine_rows,
        "kv": {"measured_bytes_per_token": kv_measured, "planner_bytes_per_token": kv_pred,
               "hidden_formula_bytes_per_token": kv_bytes_per_token_hidden(cfg, "fp32")},
    }, indent=2))
    print(f"wrote {out_path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
