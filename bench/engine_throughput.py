"""Offline throughput: aisd's engine vs Hugging Face transformers on the same model, prompts and outputs.

Workload (issue 7): 64 requests, prompt lengths uniform in [16, 256] tokens, 128 output tokens each with EOS ignored,
greedy. Systems, all measured in this run on this machine:
  - aisd        LLM.generate (continuous batching, paged KV cache, chunked prefill), float32: the mode whose greedy
                tokens equal transformers' (tests/integration)
  - aisd-bf16   the same with dtype="bfloat16": bfloat16 matmul weights and KV cache, float32 activations (mixed
                precision). Its greedy tokens are compared with aisd's float32 tokens: identical requests and the mean
                position of the first different token are printed beside it
  - hf-seq      transformers `generate`, one request at a time (the baseline). It is slow, so by default it runs on
                the first --hf-seq-requests requests; its tok/s is a per-request rate, independent of the count.
  - hf-static   transformers `generate` on left-padded batches of --static-batch requests
  - hf-cb       transformers' own continuous batching `generate_batch` (when the installed version has it)
Every figure is output tokens / wall-clock second; ratios are against hf-seq (and hf-cb). Medians over --runs.
Every aisd run starts with an empty prefix cache (``LLM.reset_prefix_cache``): the runs repeat the same prompts, and a
warm cache would skip their prefill (before this reset, runs after the first were ~30% faster for that reason alone).

    python bench/engine_throughput.py            # full workload
    python bench/engine_throughput.py --quick    # 16 requests, prompts 16-128, 32 output tokens
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def make_workload(n: int, lo: int, hi: int, vocab_lo: int, vocab_hi: int, seed: int) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(vocab_lo, vocab_hi) for _ in range(rng.randint(lo, hi))] for _ in range(n)]


def bench_aisd(model: str, prompts: list[list[int]], out_len: int, args: argparse.Namespace, dtype: str) -> dict:
    from aisd.engine import LLM, SamplingParams

    llm = LLM(model, max_num_seqs=args.max_num_seqs, max_num_batched_tokens=args.max_num_batched_tokens,
              num_threads=args.threads, kv_cache_memory_gb=args.kv_cache_gb, dtype=dtype)
    sp = SamplingParams(temperature=0, max_tokens=out_len, ignore_eos=True)
    llm.generate(prompts[:2], SamplingParams(temperature=0, max_tokens=4, ignore_eos=True))  # warm-up
    times = []
    for _ in range(args.runs):
        assert llm.reset_prefix_cache()  # each run computes every prompt: no hits from the previous run
        t = time.perf_counter()
        outs = llm.generate(prompts, sp)
        times.append(time.perf_counter() - t)
        assert all(len(o.outputs[0].token_ids) == out_len for o in outs)
    del llm  # free its weights and KV cache before the next system loads
    return {"seconds": times, "output_tokens": len(prompts) * out_len,
            "tokens": [list(o.outputs[0].token_ids) for o in outs]}


def agreement(tokens: list[list[int]], reference: list[list[int]]) -> dict:
    """How closely one run's greedy tokens follow a reference run's: identical requests, mean first difference."""
    first = [next((i for i, (a, b) in enumerate(zip(t, r, strict=True)) if a != b), len(r)) for t, r in zip(tokens, reference, strict=True)]
    return {"identical_requests": sum(t == r for t, r in zip(tokens, reference, strict=True)), "requests": len(reference),
            "mean_first_difference": statistics.mean(first), "output_len": len(reference[0]) if reference else 0}


def load_hf(path: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32).eval()


def bench_hf_seq(hf, prompts: list[list[int]], out_len: int) -> dict:
    t = time.perf_counter()
    with torch.inference_mode():
        for p in prompts:
            ids = torch.tensor([p])
            out = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=out_len,
                              min_new_tokens=out_len, do_sample=False, pad_token_id=0)
            assert out.shape[1] - len(p) == out_len
    return {"seconds": [time.perf_counter() - t], "output_tokens": len(prompts) * out_len}


def bench_hf_static(hf, prompts: list[list[int]], out_len: int, batch: int) -> dict:
    t = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(prompts), batch):
            chunk = prompts[i:i + batch]
            width = max(map(len, chunk))
            ids = torch.tensor([[0] * (width - len(p)) + p for p in chunk])  # left padding
            mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in chunk])
            out = hf.generate(ids, attention_mask=mask, max_new_tokens=out_len, min_new_tokens=out_len,
                              do_sample=False, pad_token_id=0)
            assert out.shape[1] - width == out_len
    return {"seconds": [time.perf_counter() - t], "output_tokens": len(prompts) * out_len}


def bench_hf_cb(hf, prompts: list[list[int]], out_len: int) -> dict:
    from transformers import GenerationConfig

    if not hasattr(hf, "generate_batch"):
        return {"error": "this transformers version has no generate_batch"}
    from transformers.generation.configuration_utils import ContinuousBatchingConfig

    cfg = GenerationConfig(max_new_tokens=out_len, do_sample=False, eos_token_id=-1, pad_token_id=0)
    # size the paged cache explicitly: on CPU the automatic sizing has no GPU memory to go by
    pages = sum((len(p) + out_len) // 256 + 1 for p in prompts)
    cb = ContinuousBatchingConfig(num_blocks=pages + 8, max_batch_tokens=512)
    t = time.perf_counter()
    # no inference_mode here: generate_batch runs its loop in its own thread and updates its tensors in place
    with torch.no_grad():
        out = hf.generate_batch(inputs=prompts, generation_config=cfg, continuous_batching_config=cb,
                                progress_bar=False)
    seconds = time.perf_counter() - t
    n = sum(len(r.generated_tokens) for r in out.values())
    if n < len(prompts) * out_len:
        return {"error": f"generate_batch returned {n} of {len(prompts) * out_len} tokens (requests failed)"}
    return {"seconds": [seconds], "output_tokens": n}


AISD_SYSTEMS = {"float32": "aisd", "bfloat16": "aisd-bf16"}


def cpu_model() -> str:
    """"AMD EPYC family 25 model 17" from /proc/cpuinfo: VMs hide the marketing name, and the family tells e.g. Zen 4
    (25) from Zen 5 (26), whose bfloat16 matmuls differ 1.7x."""
    info: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())
    except OSError:
        return platform.processor() or platform.machine()
    return f"{info.get('model name', '?')} family {info.get('cpu family', '?')} model {info.get('model', '?')}"


def matmul_gflops(dtype: torch.dtype, reps: int = 200) -> float:
    """The machine's packed-weight matmul rate at a decode-step shape (64 x 576 x 3072, the MLP up-projection):
    what bounds the engine here, so results from different machines can be compared."""
    w = torch.randn(3072, 576).to(dtype)
    x = torch.randn(64, 576).to(dtype)
    packed = torch.ops.mkldnn._reorder_linear_weight(w, 64)
    times = []
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(reps):
            torch.ops.mkldnn._linear_pointwise(x, packed, None, "none", [], "")
        times.append(time.perf_counter() - t)
    return 2 * 64 * 576 * 3072 * reps / min(times) / 1e9


def tok_s(r: dict) -> float | None:
    if "seconds" not in r:
        return None
    return r["output_tokens"] / statistics.median(r["seconds"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--num-requests", type=int, default=64)
    ap.add_argument("--min-prompt", type=int, default=16)
    ap.add_argument("--max-prompt", type=int, default=256)
    ap.add_argument("--output-len", type=int, default=128)
    ap.add_argument("--runs", type=int, default=3, help="aisd runs (median); HF systems run once each")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    ap.add_argument("--max-num-seqs", type=int, default=64)
    ap.add_argument("--max-num-batched-tokens", type=int, default=1024)
    ap.add_argument("--kv-cache-gb", type=float, default=2.0)
    ap.add_argument("--dtypes", default="float32,bfloat16",
                    help="aisd modes to run, comma list of float32 (system aisd) and bfloat16 (system aisd-bf16)")
    ap.add_argument("--static-batch", type=int, default=16)
    ap.add_argument("--hf-seq-requests", type=int, default=16)
    ap.add_argument("--skip", default="", help="comma list of systems to skip: hf-seq,hf-static,hf-cb")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="results JSON (default bench/results/engine_throughput.json)")
    args = ap.parse_args()
    if args.quick:
        args.num_requests, args.max_prompt, args.output_len, args.runs = 16, 128, 32, 2
        args.hf_seq_requests = min(args.hf_seq_requests, 4)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    args.threads = args.threads or cores
    torch.set_num_threads(args.threads)
    skip = set(filter(None, args.skip.split(",")))

    from aisd import assets
    from aisd.engine.loader import resolve_model_path

    path = resolve_model_path(args.model)
    vocab_hi = 49152 if assets.is_bundled(args.model) else 32000
    prompts = make_workload(args.num_requests, args.min_prompt, args.max_prompt, 100, vocab_hi, args.seed)
    load_before = os.getloadavg()
    print(f"workload: {len(prompts)} requests, prompts {args.min_prompt}-{args.max_prompt} tokens "
          f"(mean {statistics.mean(map(len, prompts)):.0f}), {args.output_len} output tokens, greedy, EOS ignored; "
          f"{args.threads} threads on {cores} cores; load average {load_before[0]:.1f}", flush=True)

    from aisd.engine import cpu_kernels, fused_ops

    probe = {"cpu": cpu_model(), "decode_kernel": cpu_kernels.vector_path(), "fused_ops": fused_ops.available()}
    if torch.backends.mkldnn.is_available():
        probe.update(matmul_gflops_float32=round(matmul_gflops(torch.float32), 1),
                     matmul_gflops_bfloat16=round(matmul_gflops(torch.bfloat16), 1))
    print(f"machine: {probe}", flush=True)
    results: dict[str, dict] = {}
    for dtype in filter(None, args.dtypes.split(",")):
        if dtype not in AISD_SYSTEMS:
            ap.error(f"--dtypes: unknown dtype {dtype!r} (choose from {', '.join(AISD_SYSTEMS)})")
        name = AISD_SYSTEMS[dtype]
        results[name] = bench_aisd(args.model, prompts, args.output_len, args, dtype)
        print(f"{name}: {tok_s(results[name]):.1f} tok/s", flush=True)
    if "aisd" in results and "aisd-bf16" in results:
        results["aisd-bf16"]["agreement"] = agree = agreement(results["aisd-bf16"]["tokens"], results["aisd"]["tokens"])
        print(f"aisd-bf16 vs aisd float32 greedy tokens: {agree['identical_requests']}/{agree['requests']} requests "
              f"identical, first difference at token {agree['mean_first_difference']:.1f} of "
              f"{agree['output_len']} on average", flush=True)
    hf = None
    if not {"hf-seq", "hf-static", "hf-cb"} <= skip:
        hf = load_hf(path)
    if "hf-seq" not in skip:
        results["hf-seq"] = bench_hf_seq(hf, prompts[:args.hf_seq_requests], args.output_len)
        print(f"hf-seq: {tok_s(results['hf-seq']):.1f} tok/s", flush=True)
    if "hf-static" not in skip:
        results["hf-static"] = bench_hf_static(hf, prompts, args.output_len, args.static_batch)
        print(f"hf-static: {tok_s(results['hf-static']):.1f} tok/s", flush=True)
    if "hf-cb" not in skip:
        try:
            results["hf-cb"] = bench_hf_cb(hf, prompts, args.output_len)
        except Exception as e:  # noqa: BLE001 - report, do not crash the whole benchmark
            results["hf-cb"] = {"error": f"{type(e).__name__}: {e}"[:300]}
        r = results["hf-cb"]
        print(f"hf-cb: {tok_s(r):.1f} tok/s" if tok_s(r) else f"hf-cb: {r.get('error')}", flush=True)

    base = tok_s(results.get("hf-seq", {}))
    cb = tok_s(results.get("hf-cb", {}))
    rows = []
    print(f"\n{'system':<11}{'tok/s':>10}{'x hf-seq':>10}{'x hf-cb':>10}{'seconds':>10}{'tokens':>9}")
    for name, r in results.items():
        v = tok_s(r)
        row = {"system": name, "tok_per_s": v, "vs_hf_seq": v / base if v and base else None,
               "vs_hf_cb": v / cb if v and cb else None, "median_seconds": statistics.median(r["seconds"])
               if "seconds" in r else None, "output_tokens": r.get("output_tokens"), "error": r.get("error"),
               "agreement_with_float32": r.get("agreement")}
        rows.append(row)
        if v is None:
            print(f"{name:<11}{'n/a':>10}   {r.get('error', '')}")
            continue
        def ratio(x: float | None) -> str:  # "-" when that baseline was skipped or failed
            return f"{x:>10.2f}" if x is not None else f"{'-':>10}"

        print(f"{name:<11}{v:>10.1f}{ratio(row['vs_hf_seq'])}{ratio(row['vs_hf_cb'])}"
              f"{row['median_seconds']:>10.1f}{r['output_tokens']:>9}")
    out = {"benchmark": "engine_throughput", "quick": args.quick, "model": args.model,
           "machine": {"cores": cores, "threads": args.threads, **probe,
                       "torch": torch.__version__, "python": sys.version.split()[0],
                       "load_average_before": load_before, "load_average_after": os.getloadavg()},
           "workload": {"requests": len(prompts), "prompt_min": args.min_prompt, "prompt_max": args.max_prompt,
                        "output_len": args.output_len, "hf_seq_requests": args.hf_seq_requests,
                        "static_batch": args.static_batch, "aisd_runs": args.runs,
                        "max_num_seqs": args.max_num_seqs, "max_num_batched_tokens": args.max_num_batched_tokens,
                        "dtypes": args.dtypes},
           "results": rows, "raw": {k: {x: y for x, y in r.items() if x != "tokens"} for k, r in results.items()},
           "targets": {"vs_hf_seq": 30.0, "vs_hf_cb": 1.5}}
    RESULTS.mkdir(parents=True, exist_ok=True)
    dest = args.out or RESULTS / ("engine_throughput_quick.json" if args.quick else "engine_throughput.json")
    dest.write_text(json.dumps(out, indent=2))
    print(f"\nwrote {dest}")


if __name__ == "__main__":
    main()
