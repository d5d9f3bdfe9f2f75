"""HTML report of an analysis: summary, SRM status, a results table, an interval forest plot and the cumulative effect
of the primary metric over time, as one self-contained file (plots embedded as base64 PNG, no network assets)."""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path
from typing import Any

from aisd.experiments.analyze import AnalysisResult


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)  # headless: never needs a display
    import matplotlib.pyplot as plt

    return plt


def forest_plot(result: AnalysisResult) -> str | None:
    """Relative effect and its interval per metric and treatment (fixed-horizon and sequential), base64 PNG."""
    rows = [m for m in result.metrics if m.relative is not None and m.relative.get("effect") is not None
            and math.isfinite(m.relative["effect"])]
    if not rows:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 0.55 * len(rows) + 1.2))
    for i, m in enumerate(reversed(rows)):
        rel = m.relative or {}
        colour = "#2a7" if m.significant and m.role != "guardrail" else ("#c33" if m.role == "guardrail"
                                                                          and not m.significant else "#357")
        ax.plot([rel["ci_low"] * 100, rel["ci_high"] * 100], [i, i], color=colour, lw=2.5)
        ax.plot([rel["effect"] * 100], [i], "o", color=colour)
        if m.guardrail and m.guardrail.get("scale") == "relative":
            edge = -m.guardrail["margin"] if _higher_is_better(result, m.metric) else m.guardrail["margin"]
            ax.plot([edge * 100], [i], "|", color="#c33", ms=14)
    labels = [f"{m.metric} ({m.role[:3]}) {m.variant}" for m in reversed(rows)]
    ax.set_yticks(range(len(rows)), labels)
    ax.axvline(0, color="#888", lw=1, ls="--")
    level = 100 - 100 * float(result.experiment["alpha"])
    ax.set_xlabel(f"relative effect vs {result.experiment['variants'][0]['name']} (%), {level:.0f}% CI")
    ax.set_title("Effects by metric (red tick: guardrail margin)")
    return _png(fig)


def _higher_is_better(result: AnalysisResult, metric: str) -> bool:
    for role in ("primary_metrics", "secondary_metrics", "guardrail_metrics"):
        for m in result.experiment[role]:
            if m["name"] == metric:
                return bool(m["higher_is_better"])
    return True


def cumulative_plot(result: AnalysisResult) -> str | None:
    """Cumulative relative effect of the primary metric by day with its fixed and always-valid intervals."""
    if not result.timeseries:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    variants = sorted({p.variant for p in result.timeseries})
    for k, v in enumerate(variants):
        pts = [p for p in result.timeseries if p.variant == v]
        x = list(range(len(pts)))
        colour = f"C{k}"
        ax.plot(x, [p.effect * 100 for p in pts], "-o", color=colour, ms=3, label=f"{v}: effect")
        ax.fill_between(x, [p.ci_low * 100 for p in pts], [p.ci_high * 100 for p in pts], color=colour, alpha=0.2,
                        label=f"{v}: fixed-horizon CI")
        if all(p.seq_low is not None for p in pts):
            ax.plot(x, [p.seq_low * 100 for p in pts], ":", color=colour, label=f"{v}: always-valid CS")
            ax.plot(x, [p.seq_high * 100 for p in pts], ":", color=colour)
        ax.set_xticks(x, [p.day[5:] for p in pts], rotation=45, fontsize=7)
    ax.axhline(0, color="#888", lw=1, ls="--")
    lo = min(p.ci_low for p in result.timeseries) * 100
    hi = max(p.ci_high for p in result.timeseries) * 100
    pad = 0.5 * (hi - lo) + 1e-9
    ax.set_ylim(min(lo, 0) - pad, max(hi, 0) + pad)  # the early always-valid bounds are wide: keep the CI readable
    metric = result.experiment["primary_metrics"][0]["name"]
    ax.set_ylabel(f"{metric}: relative effect (%)")
    ax.set_title("Cumulative effect over time")
    ax.legend(fontsize=7, loc="best")
    return _png(fig)


def _fmt(x: Any, pct: bool = False, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    if pct:
        return f"{x * 100:+.2f}%"
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return html.escape(str(x))


def render_html(result: AnalysisResult) -> str:
    """The full report as a standalone HTML page."""
    exp = result.experiment
    e = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>aisd experiment {e(exp['name'])}</title>",
             "<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:4px 8px;"
             "text-align:right}th{background:#f4f4f4}td:first-child,td:nth-child(2){text-align:left}"
             ".warn{background:#fee;border:1px solid #c33;padding:8px}.ok{color:#2a7}.bad{color:#c33}</style>",
             "</head><body>",
             f"<h1>Experiment {e(exp['name'])}</h1>",
             f"<p><b>Hypothesis:</b> {e(exp.get('hypothesis') or '-')}<br>",
             f"<b>Status:</b> {e(exp['status'])} &middot; <b>unit:</b> {e(exp['unit'])} &middot; <b>as of:</b> "
             f"{e(result.as_of)} &middot; alpha {exp['alpha']} &middot; MDE {exp['mde'] * 100:.1f}% &middot; "
             f"correction {e(exp['correction'])} &middot; decision basis: "
             f"{'sequential (mSPRT, always valid)' if exp['sequential'] else 'fixed horizon'}</p>"]
    srm = result.srm
    parts.append("<h2>Traffic</h2><table><tr><th>variant</th><th>exposed units</th><th>expected</th></tr>")
    for (v, n), expct in zip(result.exposures.items(), srm.get("expected", []), strict=False):
        parts.append(f"<tr><td>{e(v)}</td><td>{n}</td><td>{expct:.0f}</td></tr>")
    parts.append(f"</table><p>SRM chi-square p = {_fmt(srm['p_value'])} (threshold {srm['threshold']}): "
                 + ("<span class='bad'>MISMATCH</span>" if srm["mismatch"] else "<span class='ok'>ok</span>")
                 + "</p>")
    for w in result.warnings:
        parts.append(f"<p class='warn'>{e(w)}</p>")
    if result.withheld:
        parts.append("<p class='warn'><b>Results withheld:</b> the split of units does not match the configured "
                     "weights, so every comparison would be biased. Fix the assignment or logging bug first.</p>")
    else:
        parts.append("<h2>Results</h2><table><tr><th>metric</th><th>role</th><th>variant</th><th>control</th>"
                     "<th>treatment</th><th>relative effect</th><th>CI</th><th>p</th><th>adj. p</th>"
                     "<th>seq. p</th><th>CUPED var. red.</th><th>chance to win</th><th>verdict</th></tr>")
        for m in result.metrics:
            rel = m.relative or {}
            verdict = m.note or "not significant"
            css = "ok" if m.significant else ("bad" if m.role == "guardrail" else "")
            parts.append(
                f"<tr><td>{e(m.metric)}</td><td>{e(m.role)}</td><td>{e(m.variant)}</td>"
                f"<td>{_fmt(m.mean_control)}</td><td>{_fmt(m.mean_treatment)}</td>"
                f"<td>{_fmt(rel.get('effect'), True)}</td>"
                f"<td>[{_fmt(rel.get('ci_low'), True)}, {_fmt(rel.get('ci_high'), True)}]</td>"
                f"<td>{_fmt(m.absolute['p_value'])}</td><td>{_fmt(m.adjusted_p_value)}</td>"
                f"<td>{_fmt((m.sequential or {}).get('p_value'))}</td>"
                f"<td>{_fmt(m.cuped_variance_reduction, True) if m.cuped_variance_reduction is not None else '-'}</td>"
                f"<td>{_fmt(m.chance_to_win, True)[1:] if m.chance_to_win is not None else '-'}</td>"
                f"<td class='{css}'>{e(verdict)}</td></tr>")
        parts.append("</table>")
        if result.power:
            p = result.power
            parts.append(f"<p><b>Power</b> ({e(p.metric)}, MDE {p.mde_relative * 100:.1f}%): needs {p.n_needed_per_arm}"
                         f" units per arm, has {p.n_smallest_arm} (achieved power {p.achieved_power:.2f}) after "
                         f"{p.days_observed} day(s)"
                         + (f"; about {p.days_to_go} more day(s) at the current rate" if p.days_to_go else "")
                         + ".</p>")
        for title, img in (("Effects", forest_plot(result)), ("Over time", cumulative_plot(result))):
            if img:
                parts.append(f"<h2>{title}</h2><img alt='{title}' src='data:image/png;base64,{img}'>")
    if result.reports:
        parts.append("<h2>Offline evaluations</h2>")
        for rep in result.reports:
            metrics = sorted({k for vals in rep["metrics"].values() for k in vals})
            parts.append(f"<p><b>{e(rep['name'])}</b> {e(rep.get('source') or '')} n={rep.get('n') or '-'}</p>"
                         "<table><tr><th>variant</th>" + "".join(f"<th>{e(k)}</th>" for k in metrics) + "</tr>")
            for variant, vals in rep["metrics"].items():
                parts.append(f"<tr><td>{e(variant)}</td>" + "".join(f"<td>{_fmt(vals.get(k))}</td>" for k in metrics)
                             + "</tr>")
            parts.append("</table>")
    parts.append("<p style='color:#888;font-size:12px'>Generated by aisd. Effects: treatment vs control; relative "
                 "intervals by the delta method; sequential p-values are mSPRT always-valid p-values.</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_html(result: AnalysisResult, path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_html(result), encoding="utf-8")
    return out
