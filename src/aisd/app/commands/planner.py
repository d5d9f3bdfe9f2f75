"""CLI: ``aisd plan memory | kv | gpus | latency | cost | models | hardware | prices``.

Every command takes ``--model`` (a catalog id, a .gguf file, a config.json or a folder), prints rich tables, and
``--json`` prints the same result as JSON. ``--catalog FILE`` layers your own models / GPUs / prices (same JSON shape
as the shipped catalogs) over the shipped ones.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(no_args_is_help=True, help="Capacity and cost planning: memory, KV cache, GPUs, latency, cost.")
console = Console()

MODEL = typer.Option("llama-3-8b", "--model", "-m", help="Catalog id (aisd plan models), .gguf, config.json or folder.")
PRECISION = typer.Option("fp16", "--precision", "-p",
                         help="Weights: fp32 fp16 bf16 fp8 int8 int4 q8_0 q4_0 q4_1 q4_k_m q5_k_m q6_k.")
KV_DTYPE = typer.Option("fp16", "--kv-dtype", help="KV cache element type: fp32 fp16 bf16 fp8 int8.")
CATALOG = typer.Option(None, "--catalog", help="JSON file with extra/overriding models, gpus, prices.")
JSON_OUT = typer.Option(False, "--json", help="Print JSON instead of tables.")


def _catalog(path: Path | None) -> Any:
    """The configured catalog (shipped JSON + ``AISD_PLANNER__CATALOG``), extended by ``--catalog`` if given."""
    from aisd.app.settings import Settings
    from aisd.app.wiring import Services
    from aisd.planner import load_catalog_file

    base = Services(Settings()).planner_catalog
    return load_catalog_file(path, base) if path else base


def _model(name: str, catalog: Any) -> Any:
    from aisd.planner import model_config

    return model_config(name, catalog)


def _gb(n: float) -> str:
    return f"{n / 1e9:,.2f} GB"


def _print_json(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, default=str))


def _kv_table(title: str, rows: list[tuple[str, str]]) -> Table:
    table = Table(title=title, show_header=False)
    table.add_column("", style="bold")
    table.add_column("", justify="right")
    for k, v in rows:
        table.add_row(k, v)
    return table


def _capacity_table(cap: Any) -> Table:
    return _kv_table(
        f"vLLM-style KV capacity: {cap.gpu} x TP {cap.tensor_parallel} x PP {cap.pipeline_parallel}, "
        f"gpu_memory_utilization {cap.gpu_memory_utilization}",
        [("memory per GPU", _gb(cap.memory_per_gpu)), ("budget (x utilization)", _gb(cap.budget_per_gpu)),
         ("weights per GPU", _gb(cap.weights_per_gpu)), ("activations (profile run)", _gb(cap.activations_per_gpu)),
         ("runtime overhead", _gb(cap.runtime_overhead_per_gpu)),
         ("KV cache available per GPU", _gb(cap.kv_available_per_gpu)),
         ("KV bytes/token per GPU", f"{cap.kv_bytes_per_token_per_gpu:,}"),
         (f"# GPU blocks (block size {cap.block_size})", f"{cap.num_gpu_blocks:,}"),
         ("KV cache tokens", f"{cap.kv_cache_tokens:,}"),
         (f"max concurrency @ {cap.max_model_len:,} tokens", f"{cap.max_concurrency:.2f}x"),
         ("fits", "yes" if cap.fits else f"NO: {cap.reason}")])


@app.command("models")
def models(json_out: bool = JSON_OUT, catalog: Path = CATALOG) -> None:
    """List the model catalog with parameter counts and KV bytes per token."""
    from aisd.planner import kv_bytes_per_token

    cat = _catalog(catalog)
    if json_out:
        _print_json([m.to_dict() for m in cat.models.values()])
        return
    table = Table(title="Models (L layers, q/kv heads, hd head dim; * tied; MoE total/active; --json for all)")
    for col in ("id", "params", "L", "q/kv", "hd", "vocab", "ctx", "KV/token"):
        table.add_column(col, justify="left" if col == "id" else "right", no_wrap=True, min_width=len(col))
    for m in cat.models.values():
        params = f"{m.params / 1e9:.2f}B" + (f"/{m.active_params / 1e9:.1f}B" if m.is_moe else "")
        table.add_row(m.id, params + ("*" if m.tied_embeddings else ""), str(m.num_layers),
                      f"{m.num_heads}/{m.num_kv_heads}", str(m.head_dim), f"{m.vocab_size / 1000:.0f}k",
                      f"{m.max_context // 1024}k", f"{kv_bytes_per_token(m) / 1024:g}K")
    console.print(table)


@app.command("hardware")
def hardware(json_out: bool = JSON_OUT, catalog: Path = CATALOG) -> None:
    """List the GPU catalog (memory, bandwidth, dense TFLOPS, editable $/hour)."""
    cat = _catalog(catalog)
    if json_out:
        _print_json({"prices_as_of": cat.gpu_prices_as_of, "gpus": [g.to_dict() for g in cat.gpus.values()]})
        return
    table = Table(title=f"Accelerators (approximate on-demand $/hour as of {cat.gpu_prices_as_of}; editable)")
    for col in ("id", "memory", "bandwidth", "FP16 TF", "FP8 TF", "link", "$/hour"):
        table.add_column(col, justify="left" if col in ("id", "link") else "right", no_wrap=col != "link")
    for g in cat.gpus.values():
        table.add_row(g.id, f"{g.memory_bytes / 2**30:.1f} GiB", f"{g.bandwidth_gbs:,.0f} GB/s", f"{g.fp16_tflops:g}",
                      f"{g.fp8_tflops:g}" if g.fp8_tflops else "-", g.interconnect, f"{g.price_per_hour:.2f}")
    console.print(table)


@app.command("prices")
def prices(json_out: bool = JSON_OUT, catalog: Path = CATALOG) -> None:
    """List the API price table (USD per million tokens, dated; editable)."""
    cat = _catalog(catalog)
    if json_out:
        _print_json({"as_of": cat.prices_as_of, "prices": [p.to_dict() for p in cat.prices.values()]})
        return
    table = Table(title=f"API list prices, USD per 1M tokens, as of {cat.prices_as_of} (edit or --catalog)")
    for col in ("id", "provider", "input", "output"):
        table.add_column(col, justify="left" if col in ("id", "provider") else "right")
    for p in cat.prices.values():
        table.add_row(p.id, p.provider, f"{p.input_per_mtok:.3f}", f"{p.output_per_mtok:.3f}")
    console.print(table)


@app.command("memory")
def memory(model: str = MODEL, precision: str = PRECISION, context: int = typer.Option(4096, help="Tokens/request."),
           batch: int = typer.Option(1, help="Concurrent requests."), kv_dtype: str = KV_DTYPE,
           gpu: str = typer.Option(None, help="Also report KV blocks and max concurrency on this GPU."),
           gpu_memory_utilization: float = typer.Option(0.9, help="Fraction of GPU memory the engine may use."),
           tp: int = typer.Option(1, "--tp", help="Tensor-parallel size."),
           pp: int = typer.Option(1, "--pp", help="Pipeline-parallel size."),
           block_size: int = typer.Option(16, help="KV block size in tokens (vLLM default 16)."),
           runtime_overhead_gb: float = typer.Option(1.0, help="CUDA context, workspaces, graphs (GiB)."),
           keep_embeddings_fp16: bool = typer.Option(False, help="Quantized formats: keep embeddings/head 16-bit."),
           json_out: bool = JSON_OUT, catalog: Path = CATALOG) -> None:
    """Memory to serve a model: weights by precision, KV cache, activations, overhead (+ KV blocks on a GPU)."""
    from aisd.planner.reports import memory_plan

    cat = _catalog(catalog)
    m = _model(model, cat)
    plan = memory_plan(m, precision, context=context, batch=batch, kv_dtype=kv_dtype,
                       gpu=cat.gpu(gpu) if gpu else None, gpu_memory_utilization=gpu_memory_utilization,
                       tensor_parallel=tp, pipeline_parallel=pp, block_size=block_size,
                       runtime_overhead_gb=runtime_overhead_gb, keep_embeddings_fp16=keep_embeddings_fp16)
    if json_out:
        _print_json(plan.to_dict())
        return
    table = Table(title=f"{m.id}: {m.params:,} parameters ({m.params / 1e9:.2f}B) - weights by precision")
    table.add_column("precision")
    table.add_column("weights", justify="right")
    for p, n in plan.weights_by_precision.items():
        table.add_row(p, _gb(n))
    if plan.file_weight_bytes:
        table.add_row("this GGUF file (stored types)", _gb(plan.file_weight_bytes))
    console.print(table)
    e = plan.estimate
    console.print(_kv_table(
        f"Serving {m.id} at {precision}, {batch} x {context:,} tokens, KV {kv_dtype}",
        [("weights", _gb(e.weights)), ("KV cache", _gb(e.kv_cache)), ("activations (peak)", _gb(e.activations)),
         ("runtime overhead", _gb(e.runtime_overhead)), ("total", _gb(e.total))]))
    if plan.capacity is not None:
        console.print(_capacity_table(plan.capacity))


@app.command("kv")
def kv(model: str = MODEL, context: int = typer.Option(4096, help="Tokens per request."),
       batch: int = typer.Option(1, help="Concurrent requests."), kv_dtype: str = KV_DTYPE,
       gpu: str = typer.Option(None, help="Also report KV blocks and max concurrency on this GPU."),
       precision: str = PRECISION, gpu_memory_utilization: float = typer.Option(0.9),
       tp: int = typer.Option(1, "--tp"), pp: int = typer.Option(1, "--pp"), block_size: int = typer.Option(16),
       json_out: bool = JSON_OUT, catalog: Path = CATALOG) -> None:
    """KV cache per token (GQA-correct, beside the hidden_dim formula), per request and per batch."""
    from aisd.planner.reports import kv_plan

    cat = _catalog(catalog)
    m = _model(model, cat)
    plan = kv_plan(m, context=context, batch=batch, kv_dtype=kv_dtype, gpu=cat.gpu(gpu) if gpu else None,
                   precision=precision, gpu_memory_utilization=gpu_memory_utilization, tensor_parallel=tp,
                   pipeline_parallel=pp, block_size=block_size)
    if json_out:
        _print_json(plan.to_dict())
        return
    r = plan.report
    console.print(_kv_table(
        f"KV cache of {m.id} ({kv_dtype})",
        [("layers x kv heads x head dim", f"{r.num_layers} x {r.num_kv_heads} x {r.head_dim}"),
         ("KV bytes/token = 2 x L x kv_heads x head_dim x bytes", f"{r.kv_bytes_per_token:,}"),
         ("hidden_dim formula 2 x L x hidden x bytes", f"{r.hidden_formula_bytes_per_token:,}"),
         ("hidden_dim formula overstates by", f"{r.overstatement:g}x (heads {r.num_heads} / kv heads "
                                              f"{r.num_kv_heads})"),
         (f"per request ({r.tokens_held_per_request:,} tokens held)", _gb(r.kv_bytes_per_request)),
         (f"per batch of {batch}", _gb(r.kv_bytes_per_batch))]))
    if plan.capacity is not None:
        console.print(_capacity_table(plan.capacity))


@app.command("gpus")
def gpus(model: str = MODEL, precision: str = PRECISION,
         gpu: str = typer.Option(None, help="One GPU id; default: compare every GPU in the catalog."),
         context: int = typer.Option(4096, help="Tokens per request (prompt + output)."),
         concurrency: int = typer.Option(1, help="Requests served at once."), kv_dtype: str = KV_DTYPE,
         gpu_memory_utilization: float = typer.Option(0.9),
         target_tokens_per_s: float = typer.Option(None, help="Aggregate decode throughput to reach (DP)."),
         json_out: bool = JSON_OUT, catalog: Path = CATALOG) -> None:
    """Smallest TP / PP / DP plans that fit the model at a context length and concurrency."""
    from aisd.planner.reports import compare_gpus

    cat = _catalog(catalog)
    m = _model(model, cat)
    result = compare_gpus(m, [cat.gpu(gpu)] if gpu else None, precision, context=context, concurrency=concurrency,
                          kv_dtype=kv_dtype, gpu_memory_utilization=gpu_memory_utilization,
                          target_tokens_per_s=target_tokens_per_s, catalog=cat)
    if json_out:
        _print_json(result.to_dict())
        return
    table = Table(title=f"{m.id} at {precision}: {concurrency} x {context:,} tokens (cheapest first; * = recommended)")
    for col in ("gpu", "plan", "TP", "PP", "DP", "GPUs", "max conc./replica", "TPOT ms", "tok/s", "$/hour"):
        table.add_column(col, justify="left" if col in ("gpu", "plan") else "right", no_wrap=col in ("gpu", "plan"))
    kinds: dict[str, str] = {}
    for rep in result.reports:
        if not rep.plans:
            table.add_row(rep.gpu, "does not fit", "", "", "", "", "", "", "", "")
            continue
        best = rep.recommended
        for p in rep.plans if gpu else [best]:
            kinds.setdefault(p.kind, p.trade_off)
            table.add_row(rep.gpu, p.kind + (" *" if p is best else ""), str(p.tensor_parallel),
                          str(p.pipeline_parallel), str(p.data_parallel), str(p.gpus),
                          f"{p.capacity.max_concurrency:.1f}", f"{p.tpot_ms:.1f}", f"{p.tokens_per_s:,.0f}",
                          f"{p.cost_per_hour:.2f}")
    console.print(table)
    for kind, sentence in kinds.items():
        console.print(f"[bold]{kind}[/bold]: {sentence}")
    for rep in result.reports:
        if rep.note:
            console.print(f"[dim]{rep.gpu}: {rep.note}[/dim]")


@app.command("latency")
def latency(model: str = MODEL, gpu: str = typer.Option(None, help="GPU for modelled prefill/decode."),
            precision: str = PRECISION, prompt_tokens: int = typer.Option(512), output_tokens: int = typer.Option(256),
            batch: int = typer.Option(1, help="Sequences decoding together."), tp: int = typer.Option(1, "--tp"),
            network_ms: float = typer.Option(None, help="Default 75 (seed: 50-100)."),
            tokenization_ms: float = typer.Option(None, help="Default 7.5 (seed: 5-10)."),
            postprocessing_ms: float = typer.Option(None, help="Default 15 (seed: 10-20)."),
            measured: Path = typer.Option(None, help="Engine benchmark JSON (bench/results/engine_*.json)."),
            measured_row: str = typer.Option(None, help="Pick the result row containing this text (default: first)."),
            json_out: bool = JSON_OUT, catalog: Path = CATALOG) -> None:
    """Latency budget of one request: network, tokenization, prefill, decode x tokens, post-processing."""
    from aisd.planner import latency_budget, load_measured

    cat = _catalog(catalog)
    m = _model(model, cat)
    budget = latency_budget(m, cat.gpu(gpu) if gpu else None, precision, prompt_tokens=prompt_tokens,
                            output_tokens=output_tokens, batch=batch, tensor_parallel=tp, network_ms=network_ms,
                            tokenization_ms=tokenization_ms, postprocessing_ms=postprocessing_ms,
                            measured=load_measured(measured, measured_row) if measured else None)
    if json_out:
        _print_json(budget.to_dict())
        return
    table = Table(title=f"Latency budget: {m.id}, {prompt_tokens:,} prompt + {output_tokens:,} output tokens")
    table.add_column("component")
    table.add_column("ms", justify="right")
    table.add_column("share", justify="right")
    table.add_column("source")
    total = budget.total_ms or 1.0
    for item in budget.items:
        table.add_row(item.component, f"{item.ms:,.1f}", f"{item.ms / total:.0%}", item.source)
    table.add_row("[bold]total[/bold]", f"[bold]{budget.total_ms:,.1f}[/bold]", "", f"TTFT {budget.ttft_ms:,.1f} ms, "
                  f"TPOT {budget.tpot_ms:.2f} ms")
    console.print(table)


@app.command("cost")
def cost(model: str = MODEL, gpu: str = typer.Option("h100-80"), precision: str = PRECISION,
         api: str = typer.Option("gpt-4o", help="API price id (aisd plan prices)."),
         input_tokens: int = typer.Option(500, help="Prompt tokens per query."),
         output_tokens: int = typer.Option(250, help="Output tokens per query."),
         queries_per_month: float = typer.Option(100_000, help="Queries per month."),
         utilization: float = typer.Option(0.5, help="Average load / provisioned peak (0-1]."),
         batch: int = typer.Option(None, help="Concurrent sequences per replica (default: largest that fits, "
                                              "up to 64)."),
         price_per_hour: float = typer.Option(None, help="Override the GPU's $/hour."),
         fine_tuning: bool = typer.Option(False, help="The use case needs fine-tuning."),
         on_prem: bool = typer.Option(False, "--on-prem", help="Data cannot leave the premises."),
         tokens_per_s: float = typer.Option(None, "--tokens-per-s",
                                            help="Measured decode tokens/s of one replica (replaces the model)."),
         compare_apis: bool = typer.Option(False, "--compare-apis", help="Add every API in the price table."),
         json_out: bool = JSON_OUT, catalog: Path = CATALOG) -> None:
    """Cost per query and per month, API vs self-hosting, break-even volume, build-vs-buy."""
    from aisd.planner import cost_report

    cat = _catalog(catalog)
    m = _model(model, cat)
    rep = cost_report(m, cat.gpu(gpu), cat.price(api), precision, input_tokens=input_tokens,
                      output_tokens=output_tokens, queries_per_month=queries_per_month, utilization=utilization,
                      batch=batch, price_per_hour=price_per_hour, fine_tuning=fine_tuning, data_on_premises=on_prem,
                      measured_tokens_per_s=tokens_per_s,
                      compare_prices=list(cat.prices.values()) if compare_apis else None)
    if json_out:
        _print_json(rep.to_dict())
        return
    a, h, be, rec = rep.api, rep.self_host, rep.break_even, rep.recommendation
    table = Table(title=f"{queries_per_month:,.0f} queries/month x ({input_tokens} in + {output_tokens} out) = "
                        f"{rep.tokens_per_month / 1e6:,.1f}M tokens/month")
    for col in ("option", "per query", "per month", "detail"):
        table.add_column(col, justify="right" if col.startswith("per") else "left")
    table.add_row(f"API {a.api}", f"${a.cost_per_query:.5f}", f"${a.cost_per_month:,.2f}",
                  f"{a.provider} list price as of {a.prices_as_of}")
    table.add_row(f"self-host {h.model} ({h.precision})", f"${h.cost_per_query:.5f}", f"${h.cost_per_month:,.2f}",
                  f"{h.replicas} x {h.gpus_per_replica} {h.gpu} @ ${h.price_per_gpu_hour:.2f}/h, batch {h.batch}, "
                  f"{h.queries_per_s_per_replica:.2f} q/s per replica ({h.throughput_source} "
                  f"{h.decode_tokens_per_s_per_replica:,.0f} tok/s) at {h.utilization:.0%} utilization; "
                  f"floor ${h.cost_per_query_at_capacity:.5f}/query")
    for o in sorted(rep.other_apis, key=lambda o: o.cost_per_query):
        table.add_row(f"API {o.api}", f"${o.cost_per_query:.5f}", f"${o.cost_per_month:,.2f}", o.provider)
    console.print(table)
    if be.queries_per_month is not None:
        console.print(f"break-even: {be.queries_per_month:,.0f} queries/month "
                      f"({be.tokens_per_month / 1e6:,.1f}M tokens) - {be.reason}")
    else:
        console.print(f"break-even: none - {be.reason}")
    console.print(f"[bold]recommendation: {rec.decision.upper()}[/bold] "
                  f"({'self-host' if rec.decision == 'build' else 'use an API'})")
    for reason in rec.reasons:
        console.print(f"  - {reason}")
