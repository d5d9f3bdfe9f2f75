"""CLI: ``aisd exp create|list|show|start|stop|assign|log|analyze|power|simulate|attach|export``.

Each command is thin: parse, wire (``Services(Settings())``), call ``aisd.experiments``, print.
DuckDB allows one writing process per file: stop ``aisd serve`` (or use its HTTP API) while writing from the CLI.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(no_args_is_help=True, help="A/B testing: experiments, assignment, logging, analysis, power.")
console = Console()


def _services() -> Any:
    from aisd.app.settings import Settings
    from aisd.app.wiring import Services

    return Services(Settings())


def _store() -> Any:
    return _services().experiments


def _kv(items: list[str], option: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected key=value, got {item!r}", param_hint=option)
        out[key] = value.split("|") if "|" in value else value
    return out


def _variants(text: str) -> list[dict[str, Any]]:
    out = []
    for part in text.split(","):
        name, _, weight = part.strip().partition(":")
        try:
            out.append({"name": name, "weight": float(weight) if weight else 1.0})
        except ValueError:
            raise typer.BadParameter(f"bad weight in {part!r}; expected name:weight", param_hint="--variants") from None
    return out


def _print_experiment(exp: Any) -> None:
    d = exp.to_dict()
    t = Table(title=f"experiment {exp.name}", show_header=False)
    for key in ("hypothesis", "status", "unit", "traffic", "layer", "layer_range", "mde", "alpha", "power",
                "correction", "cuped", "sequential", "created_at", "started_at", "stopped_at"):
        t.add_row(key, str(d[key]))
    t.add_row("variants", ", ".join(f"{v.name} ({w:.0%})" for v, w in zip(exp.variants, exp.weights, strict=True)))
    for role in ("primary", "secondary", "guardrail"):
        metrics = getattr(exp, f"{role}_metrics")
        if metrics:
            t.add_row(role, "; ".join(f"{m.name}={m.kind}({m.event}.{m.column}"
                                      + (f"/{m.denominator}" if m.denominator else "")
                                      + (f", {m.quantile}" if m.quantile else "") + ")" for m in metrics))
    if exp.targeting:
        t.add_row("targeting", json.dumps(exp.targeting))
    console.print(t)


@app.command()
def create(
    name: str = typer.Argument(..., help="Experiment name (letters, digits, _ . -)."),
    hypothesis: str = typer.Option("", "--hypothesis", "-H", help="What you expect and why."),
    variants: str = typer.Option("control:1,treatment:1", help="name:weight,...; the first is the control."),
    unit: str = typer.Option("user", help="Randomization unit: user | session | request."),
    primary: list[str] = typer.Option([], "--primary", "-p", help="Metric, e.g. 'conversion=proportion(purchase)'."),
    secondary: list[str] = typer.Option([], "--secondary", "-s", help="Secondary metric (same syntax)."),
    guardrail: list[str] = typer.Option([], "--guardrail", "-g",
                                        help="Guardrail, e.g. 'p99=quantile(request.latency_ms,0.99);lower;margin=0.05'."),
    mde: float = typer.Option(0.05, help="Relative minimum detectable effect of the primary metric."),
    alpha: float = typer.Option(0.05),
    power: float = typer.Option(0.8),
    traffic: float = typer.Option(1.0, help="Share of eligible units that enter."),
    layer: str | None = typer.Option(None, help="Mutually exclusive layer; gets a free slice of width --traffic."),
    target: list[str] = typer.Option([], "--target", help="Targeting attribute key=value or key=v1|v2."),
    correction: str = typer.Option("bh", help="Multiple-comparison correction: bh | holm | none."),
    cuped: bool = typer.Option(True, help="Use the pre-period of each metric as a CUPED covariate."),
    sequential: bool = typer.Option(True, help="Decide on always-valid (mSPRT) p-values, safe to peek daily."),
    spec: Path | None = typer.Option(None, help="A JSON file with the whole definition (flags are ignored)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Create a draft experiment."""
    if spec is not None:
        body = json.loads(spec.read_text(encoding="utf-8"))
        body.setdefault("name", name)
    else:
        body = {"name": name, "hypothesis": hypothesis, "variants": _variants(variants), "unit": unit,
                "primary_metrics": primary, "secondary_metrics": secondary, "guardrail_metrics": guardrail,
                "mde": mde, "alpha": alpha, "power": power, "traffic": traffic, "layer": layer,
                "targeting": _kv(target, "--target"), "correction": correction, "cuped": cuped,
                "sequential": sequential}
    exp = _store().create(body)
    if as_json:
        console.print_json(json.dumps(exp.to_dict()))
    else:
        _print_experiment(exp)


@app.command("list")
def list_(status: str | None = typer.Option(None, help="draft | running | stopped"),
          as_json: bool = typer.Option(False, "--json")) -> None:
    """List experiments."""
    exps = _store().list(status)
    if as_json:
        console.print_json(json.dumps([e.to_dict() for e in exps]))
        return
    t = Table(title="experiments")
    for col in ("name", "status", "unit", "variants", "primary", "started", "stopped"):
        t.add_column(col)
    for e in exps:
        t.add_row(e.name, e.status, e.unit, ", ".join(v.name for v in e.variants),
                  ", ".join(m.name for m in e.primary_metrics), e.started_at or "-", e.stopped_at or "-")
    console.print(t)


@app.command()
def show(name: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """Show one experiment's definition and its exposure counts."""
    store = _store()
    exp = store.get(name)
    if as_json:
        console.print_json(json.dumps({**exp.to_dict(), "exposures": store.exposure_counts(name)}))
        return
    _print_experiment(exp)
    console.print(f"exposures: {store.exposure_counts(name)}")


@app.command()
def start(name: str) -> None:
    """draft -> running: assignment and logging begin."""
    exp = _store().start(name)
    console.print(f"[green]{exp.name}[/] is running since {exp.started_at}")


@app.command()
def stop(name: str) -> None:
    """running -> stopped: analysis uses data up to the stop time."""
    exp = _store().stop(name)
    console.print(f"[yellow]{exp.name}[/] stopped at {exp.stopped_at}")


@app.command()
def assign(name: str, unit_id: str,
           attr: list[str] = typer.Option([], "--attr", help="Unit attribute key=value for targeting."),
           log: bool = typer.Option(False, "--log", help="Also log the exposure."),
           as_json: bool = typer.Option(False, "--json")) -> None:
    """Print the unit's variant (deterministic salted hash)."""
    attrs = {k: v for k, v in _kv(attr, "--attr").items()}
    a = _store().assign(name, unit_id, attrs or None, log_exposure=log)
    if as_json:
        console.print_json(json.dumps({"experiment": a.experiment, "unit_id": a.unit_id, "variant": a.variant,
                                       "bucket": a.bucket, "reason": a.reason}))
    else:
        console.print(f"{a.unit_id} -> {a.variant or '(not in experiment)'}  [dim]bucket {a.bucket}, {a.reason}[/]")


@app.command()
def log(name: str,
        exposures: Path | None = typer.Option(None, help="Exposures file (.parquet, .csv, .jsonl)."),
        events: Path | None = typer.Option(None, help="Events file (.parquet, .csv, .jsonl)."),
        show_rejected: int = typer.Option(10, help="How many rejected rows to print.")) -> None:
    """Append exposures and/or events from files; malformed rows are reported, valid ones kept."""
    if exposures is None and events is None:
        raise typer.BadParameter("give --exposures and/or --events")
    store = _store()
    store.get(name)
    for kind, path in (("exposures", exposures), ("events", events)):
        if path is None:
            continue
        r = store.load_file(path, kind, name)
        console.print(f"{kind}: accepted {r.accepted}, duplicates {r.duplicates}, rejected {len(r.rejected)}")
        for rej in r.rejected[:show_rejected]:
            console.print(f"  row {rej.index}: {rej.reason}", style="red")


@app.command()
def analyze(name: str,
            html: Path | None = typer.Option(None, help="Where to write the HTML report "
                                             "(default: $AISD_HOME/experiments/reports/NAME.html)."),
            no_html: bool = typer.Option(False, "--no-html", help="Skip the HTML report."),
            ignore_srm: bool = typer.Option(False, help="Show results despite a sample ratio mismatch."),
            as_json: bool = typer.Option(False, "--json")) -> None:
    """Analyse: SRM check, every metric vs control, corrections, sequential p, power; HTML report with plots."""
    from aisd.core.progress import use_rich_progress

    services = _services()
    with use_rich_progress():
        result = services.experiments.analyze(name, ignore_srm=ignore_srm)
    out_path = None
    if not no_html:
        from aisd.experiments.report import write_html

        cfg = services.settings.experiments
        default_dir = cfg.reports_dir or services.settings.path("experiments", "reports")
        out_path = write_html(result, html or Path(default_dir) / f"{name}.html")
    if as_json:
        console.print_json(json.dumps(result.to_dict()))
        return
    _print_analysis(result)
    if out_path:
        console.print(f"HTML report: {out_path}")


def _pct(x: float | None) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x * 100:+.2f}%"


def _num(x: float | None) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.4g}"


def _print_analysis(result: Any) -> None:
    srm = result.srm
    console.print(f"[bold]{result.name}[/] as of {result.as_of}; exposures {result.exposures}; SRM p = "
                  f"{srm['p_value']:.3g} " + ("[red]MISMATCH[/]" if srm["mismatch"] else "[green]ok[/]"))
    for w in result.warnings:
        console.print(f"[red]warning:[/] {w}")
    if result.withheld:
        console.print("[red]Results withheld because of the sample ratio mismatch (use --ignore-srm to see them).[/]")
        return
    t = Table(title="results: relative effect of each variant vs the control")
    for col in ("metric", "variant", "control", "treatment", "effect [CI]", "p / adj", "seq p", "P(win)",
                "verdict"):
        t.add_column(col, justify="left" if col in ("metric", "variant", "verdict") else "right")
    for m in result.metrics:
        rel = m.relative or {}
        style = "green" if m.significant else ("red" if m.role == "guardrail" else "")
        if m.role == "guardrail":
            verdict = "guard ok" if m.significant else "guard FAIL"
        else:
            verdict = m.note.replace("significant ", "") if m.significant else "n.s."
        cuped = f" cuped {m.cuped_variance_reduction:.0%}" if m.cuped_variance_reduction else ""
        t.add_row(f"{m.metric} [dim]{m.role[:3]}[/]", m.variant, _num(m.mean_control), _num(m.mean_treatment),
                  f"{_pct(rel.get('effect'))} [{_pct(rel.get('ci_low'))}, {_pct(rel.get('ci_high'))}]",
                  f"{_num(m.absolute['p_value'])} / {_num(m.adjusted_p_value)}",
                  _num((m.sequential or {}).get("p_value")),
                  f"{m.chance_to_win:.0%}" if m.chance_to_win is not None else "-", verdict + cuped, style=style)
    console.print(t)
    if result.power:
        p = result.power
        console.print(f"power: {p.metric} needs {p.n_needed_per_arm} units/arm for a {p.mde_relative:.1%} MDE; "
                      f"has {p.n_smallest_arm} (power {p.achieved_power:.2f})"
                      + (f", ~{p.days_to_go} more day(s)" if p.days_to_go else ""))


@app.command()
def power(
    sigma: float | None = typer.Option(None, help="Per-unit standard deviation of a mean metric."),
    baseline_rate: float | None = typer.Option(None, help="Control rate of a proportion metric."),
    baseline_mean: float | None = typer.Option(None, help="Control mean (turns --mde into an absolute delta)."),
    delta: float | None = typer.Option(None, help="Absolute minimum detectable effect."),
    mde: float | None = typer.Option(None, help="Relative minimum detectable effect (0.05 = 5%)."),
    alpha: float = typer.Option(0.05),
    power_: float = typer.Option(0.8, "--power"),
    arms: int = typer.Option(2),
    daily_traffic: float | None = typer.Option(None, help="Units per day entering the experiment (all arms)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Sample size per arm, n = 2 (z_a/2 + z_b)^2 sigma^2 / delta^2, and the duration in whole weeks."""
    from aisd.experiments import stats

    if baseline_rate is not None:
        sigma, base = math.sqrt(baseline_rate * (1 - baseline_rate)), baseline_rate
    elif sigma is not None:
        base = baseline_mean
    else:
        raise typer.BadParameter("give --sigma (mean metric) or --baseline-rate (proportion)")
    if delta is None:
        if mde is None or not base:
            raise typer.BadParameter("give --delta, or --mde with --baseline-rate / --baseline-mean")
        delta = mde * abs(base)
    n = stats.sample_size(sigma, delta, alpha, power_)
    out: dict[str, Any] = {"n_per_arm": math.ceil(n), "n_total": math.ceil(n) * arms, "sigma": sigma,
                           "delta": delta, "alpha": alpha, "power": power_,
                           "closed_form_n": stats.sample_size_closed_form(sigma, delta, alpha, power_)}
    if daily_traffic:
        out["days"] = stats.duration(n, daily_traffic, arms).days
    if as_json:
        console.print_json(json.dumps(out))
        return
    t = Table(title="power analysis", show_header=False)
    for k, v in out.items():
        t.add_row(k, f"{v:.6g}" if isinstance(v, float) else str(v))
    console.print(t)


@app.command()
def simulate(name: str,
             users: int = typer.Option(10_000, help="Units to generate."),
             days: int = typer.Option(14, help="Days of traffic (ending today)."),
             effect: float = typer.Option(0.05, help="True relative lift of the treatment."),
             baseline: float = typer.Option(0.1, help="Control conversion rate."),
             seed: int = typer.Option(0)) -> None:
    """Generate synthetic traffic with a known effect (creates and starts a demo experiment if NAME is new)."""
    from aisd.core.errors import NotFoundError
    from aisd.core.progress import use_rich_progress
    from aisd.experiments.model import Experiment
    from aisd.experiments.simulate import DEMO_METRICS
    from aisd.experiments.simulate import simulate as run

    store = _store()
    try:
        exp = store.get(name)
    except NotFoundError:
        exp = store.create(Experiment(name, hypothesis=f"simulated: treatment lifts conversion by {effect:.1%}",
                                      **DEMO_METRICS))
    if exp.status == "draft":
        store.start(name)
    with use_rich_progress():
        r = run(store, name, users=users, days=days, effect=effect, baseline=baseline, seed=seed)
    console.print(f"simulated {r.units} units: {r.exposures} exposures, {r.events} events in {name}")


@app.command()
def attach(name: str, report: Path = typer.Argument(..., help='JSON: {"name", "metrics": {variant: {metric: '
                                                    'value}}, "n"?, "source"?}')) -> None:
    """Attach an offline evaluation report (accuracy, F1, BLEU ... per variant) to an experiment."""
    from aisd.experiments.offline import OfflineReport

    body = json.loads(report.read_text(encoding="utf-8"))
    rep = _store().attach_report(name, OfflineReport(body.get("name", report.stem), body.get("metrics", {}),
                                                     body.get("n"), body.get("source", str(report))))
    console.print(f"attached offline report {rep.name!r} to {name}: {rep.metrics}")


@app.command()
def export(name: str, directory: Path = typer.Argument(..., help="Output folder.")) -> None:
    """Export the experiment's exposures and all events to Parquet."""
    paths = _store().export_parquet(directory, name)
    for kind, p in paths.items():
        console.print(f"{kind}: {p}")
