"""CLI: aisd features init | plan | apply | list | materialize | materialize-incremental | get-online |
get-historical | push.

Every command takes ``--repo`` (default: settings ``features.repo_path``, else $AISD_HOME/features).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(no_args_is_help=True)
console = Console()

REPO = typer.Option(None, "--repo", "-r", help="Feature repository folder (default: $AISD_HOME/features).")
JSON = typer.Option(False, "--json", help="Print JSON instead of a table.")


def _repo_path(repo: Path | None) -> Path:
    from aisd.app.settings import Settings

    settings = Settings()
    return repo or settings.features.repo_path or settings.path("features")


def _store(repo: Path | None) -> Any:
    from aisd.app.settings import Settings
    from aisd.app.wiring import Services

    settings = Settings()
    if repo is not None:
        settings.features.repo_path = repo
    return Services(settings).feature_store


def _print_plan(plan: Any) -> None:
    colour = {"create": "green", "update": "yellow", "delete": "red", "unchanged": "dim"}
    for item in plan.items:
        console.print(f"[{colour[item.action]}]{item.action:>9}[/] {item.kind} [bold]{item.name}[/]")
        for change in item.changes:
            console.print(f"           {change}", markup=False)


@app.command()
def init(path: Path = typer.Argument(None, help="Folder to create (default: the configured repository)."),
         overwrite: bool = typer.Option(False, help="Replace an existing features.py."),
         apply: bool = typer.Option(True, help="Apply the definitions right away.")) -> None:
    """Create an example repository (driver stats, Feast's quick start) with synthetic data."""
    from aisd.features.example import write_example_repo

    root = write_example_repo(_repo_path(path), overwrite=overwrite)
    console.print(f"wrote {root / 'features.py'} and {root / 'data' / 'driver_stats.parquet'}")
    if apply:
        _print_plan(_store(root).apply_repo())
        console.print("next: aisd features materialize-incremental; aisd features get-online "
                      "-f driver_hourly_stats:conv_rate -e driver_id=1001")


@app.command()
def plan(repo: Path = REPO, force: bool = typer.Option(False, help="Allow changes that drop online data.")) -> None:
    """Validate the repository's definitions and show what apply would change (nothing is written)."""
    p = _store(repo).plan_repo(force=force)
    _print_plan(p)
    if not p.has_changes:
        console.print("no changes")


@app.command("apply")
def apply_cmd(repo: Path = REPO, force: bool = typer.Option(False, help="Allow changes that drop online data.")
              ) -> None:
    """Register the repository's definitions (objects no longer defined are removed)."""
    p = _store(repo).apply_repo(force=force)
    _print_plan(p)
    console.print("applied" if p.has_changes else "no changes")


@app.command("list")
def list_cmd(what: str = typer.Argument("views", help="views | entities | services | push-sources"),
             repo: Path = REPO, as_json: bool = JSON) -> None:
    """List registered definitions."""
    store = _store(repo)
    rows: list[dict[str, Any]]
    if what == "views":
        rows = [{"name": v.name, "kind": "feature_view", "entities": ",".join(v.join_keys),
                 "features": ", ".join(f"{f.name}:{f.dtype}" for f in v.features),
                 "ttl": str(v.ttl or "-"), "online": v.online} for v in store.list_feature_views()]
        rows += [{"name": o.name, "kind": "on_demand", "entities": "-",
                  "features": ", ".join(f"{f.name}:{f.dtype}" for f in o.schema), "ttl": "-", "online": True}
                 for o in store.list_on_demand_feature_views()]
    elif what == "entities":
        rows = [{"name": e.name, "join_key": e.join_key, "type": str(e.value_type)} for e in store.list_entities()]
    elif what == "services":
        rows = [{"name": s.name, "features": ", ".join(s.feature_refs())} for s in store.list_feature_services()]
    elif what == "push-sources":
        rows = [{"name": p.name, "batch_source": p.batch_source.path} for p in store.list_push_sources()]
    else:
        raise typer.BadParameter(f"{what!r}; expected one of: views, entities, services, push-sources")
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    table = Table(*(rows[0].keys() if rows else ["name"]))
    for r in rows:
        table.add_row(*(str(v) for v in r.values()))
    console.print(table)


def _print_results(results: list[Any]) -> None:
    from datetime import UTC, datetime

    table = Table("view", "from", "to", "chunks", "rows written", "resumed")
    for r in results:
        fmt = lambda t: datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S")  # noqa: E731
        table.add_row(r.view, fmt(r.start), fmt(r.end), str(r.chunks), f"{r.rows_written:,}",
                      fmt(r.resumed_from) if r.resumed_from else "-")
    console.print(table if results else "nothing to materialize")


@app.command()
def materialize(start: str = typer.Argument(..., help="ISO-8601 start (inclusive), e.g. 2024-01-01T00:00:00"),
                end: str = typer.Argument(..., help="ISO-8601 end (exclusive)"),
                views: list[str] = typer.Option(None, "--view", "-v", help="Only these views (repeatable)."),
                repo: Path = REPO) -> None:
    """Load the latest values with event time in [start, end) into the online store; re-run resumes a killed run."""
    from aisd.core.progress import use_rich_progress

    with use_rich_progress():
        _print_results(_store(repo).materialize(start, end, views or None))


@app.command("materialize-incremental")
def materialize_incremental(end: str = typer.Argument(None, help="ISO-8601 end (default: now)"),
                            views: list[str] = typer.Option(None, "--view", "-v", help="Only these views."),
                            repo: Path = REPO) -> None:
    """Materialize from where each view stopped last time up to END."""
    from aisd.core.progress import use_rich_progress

    with use_rich_progress():
        _print_results(_store(repo).materialize_incremental(end, views or None))


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


@app.command("get-online")
def get_online(features: list[str] = typer.Option(None, "--feature", "-f", help="view:feature (repeatable)"),
               service: str = typer.Option(None, "--service", "-s", help="A feature service instead of -f."),
               entity: list[str] = typer.Option(..., "--entity", "-e", help="key=value, repeat for more rows/keys"),
               full_feature_names: bool = typer.Option(False, "--full-feature-names"),
               repo: Path = REPO, as_json: bool = JSON) -> None:
    """Read online features: -e driver_id=1001 -e driver_id=1002 gives two rows."""
    store = _store(repo)
    cols: dict[str, list[Any]] = {}
    for item in entity:
        key, sep, value = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"--entity {item!r}: expected key=value")
        cols.setdefault(key, []).append(_parse_value(value))
    if bool(features) == bool(service):
        raise typer.BadParameter("give --feature (one or more) or --service")
    refs = store.get_feature_service(service) if service else features
    resp = store.get_online_features(refs, cols, full_feature_names=full_feature_names)
    if as_json:
        typer.echo(json.dumps(resp.to_feast_json(), indent=2))
        return
    table = Table(*resp.entities, *resp.values)
    n = len(next(iter(resp.entities.values())))
    for i in range(n):
        cells = [str(v[i]) for v in resp.entities.values()]
        cells += [f"{resp.values[f][i]} [dim]{resp.statuses[f][i]}[/]" for f in resp.values]
        table.add_row(*cells)
    console.print(table)


def _read_frame(path: Path) -> Any:
    import pandas as pd

    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return pd.read_parquet(path)
    if suffix == ".csv":
        return pd.read_csv(path)
    if suffix in (".jsonl", ".json"):
        return pd.read_json(path, lines=suffix == ".jsonl")
    raise typer.BadParameter(f"{path}: expected .parquet, .csv or .jsonl")


@app.command("get-historical")
def get_historical(entities: Path = typer.Option(..., "--entities", help="Entity rows: .parquet, .csv or .jsonl "
                                                 "with join keys and event_timestamp"),
                   features: list[str] = typer.Option(None, "--feature", "-f"),
                   service: str = typer.Option(None, "--service", "-s"),
                   output: Path = typer.Option(..., "--output", "-o", help="Training set to write (.parquet)"),
                   exclude_late: bool = typer.Option(False, help="Ignore rows created after each entity row's time."),
                   full_feature_names: bool = typer.Option(False, "--full-feature-names"),
                   repo: Path = REPO) -> None:
    """Point-in-time correct training set, written to Parquet (streams; memory stays bounded)."""
    import pandas as pd

    store = _store(repo)
    if bool(features) == bool(service):
        raise typer.BadParameter("give --feature (one or more) or --service")
    refs = store.get_feature_service(service) if service else features
    if entities.suffix.lower() == ".parquet":
        frame: Any = str(entities)
    else:
        frame = _read_frame(entities)
        if "event_timestamp" in frame.columns:
            frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True)
    job = store.get_historical_features(frame, refs, full_feature_names=full_feature_names,
                                        exclude_late=exclude_late)
    import time

    import pyarrow.parquet as pq

    started = time.perf_counter()
    out = job.to_parquet(output)
    console.print(f"wrote {pq.ParquetFile(out).metadata.num_rows:,} rows x {len(job.output_columns)} columns "
                  f"to {out} ({job.engine()} engine, {time.perf_counter() - started:.1f} s)")


@app.command()
def push(source: str = typer.Argument(..., help="Push source name"),
         path: Path = typer.Argument(..., help="Rows: .parquet, .csv or .jsonl"),
         to: str = typer.Option("online", help="online | offline | online_and_offline"),
         repo: Path = REPO) -> None:
    """Write rows to the online store (and/or append them to the offline store)."""
    res = _store(repo).push(source, _read_frame(path), to=to)
    console.print(f"pushed {res.rows} rows to {', '.join(res.views)}: {res.online_rows_written} online rows "
                  f"written" + (f", offline file {res.offline_file}" if res.offline_file else ""))
