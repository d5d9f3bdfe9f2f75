"""CLI: aisd vector create | list | info | upsert | search | delete | drop | payload-index | compact | advise.

Reading commands (list, info, search) open the store read-only, so they work while ``aisd serve`` holds the writer
lock; writing commands take the lock and fail with a clear message if another process has it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(no_args_is_help=True)
console = Console()


def _services() -> Any:
    from aisd.app.settings import Settings
    from aisd.app.wiring import Services

    return Services(Settings())


def _reader() -> Any:
    from aisd.app.settings import Settings
    from aisd.vector import VectorStore

    return VectorStore(Settings().path("vector"), read_only=True)


def _parse_params(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"expected key=value, got {item!r}", param_hint="--param")
        out[key] = json.loads(value) if re.fullmatch(r"-?\d+(\.\d+)?|true|false", value) else value
    return out


def _parse_bytes(text: str | None) -> int | None:
    if text is None:
        return None
    m = re.fullmatch(r"\s*([\d.]+)\s*([KMGT]?i?B?)?\s*", text, re.IGNORECASE)
    if not m:
        raise typer.BadParameter(f"expected a size like 512MB or 2GiB, got {text!r}", param_hint="--memory")
    unit = (m.group(2) or "").upper().replace("I", "").replace("B", "")
    return int(float(m.group(1)) * {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}[unit])


def _print_info(info: Any, as_json: bool) -> None:
    if as_json:
        console.print_json(json.dumps(info.to_dict()))
        return
    table = Table(title=f"collection {info.name}", show_header=False)
    for key, value in info.to_dict().items():
        table.add_row(key, str(value))
    console.print(table)


@app.command()
def create(name: str, dim: int = typer.Option(..., help="Vector dimension."),
           metric: str = typer.Option("cosine", help="cosine | dot | l2"),
           index: str = typer.Option(None, help="auto | flat | hnsw | ivf | pq | ivfpq | sq8 (default: settings)"),
           param: list[str] = typer.Option([], "--param", "-p", help="Index parameter key=value, e.g. M=32."),
           auto_threshold: int = typer.Option(None, help="index=auto: rebuild into the advised kind at this many "
                                                         "points (default: settings)."),
           payload_index: list[str] = typer.Option([], help="field:keyword or field:numeric (repeatable)."),
           as_json: bool = typer.Option(False, "--json")) -> None:
    """Create a collection."""
    services = _services()
    try:
        col = services.vector_store.create_collection(
            name, dim=dim, metric=metric, index=index or services.settings.vector.default_index,
            params=_parse_params(param), auto_threshold=auto_threshold or services.settings.vector.auto_threshold)
        for spec in payload_index:
            field, _, kind = spec.partition(":")
            col.create_payload_index(field, kind or "keyword")
        _print_info(col.info(), as_json)
    finally:
        services.close()


@app.command("list")
def list_(as_json: bool = typer.Option(False, "--json")) -> None:
    """List collections with their size and index."""
    store = _reader()
    infos = [store.get_collection(n).info() for n in store.list_collections()]
    store.close()
    if as_json:
        console.print_json(json.dumps([i.to_dict() for i in infos]))
        return
    table = Table("name", "dim", "metric", "index", "active", "count", "deleted", "disk bytes")
    for i in infos:
        table.add_row(i.name, str(i.dim), i.metric, i.index, i.active_index, f"{i.count:,}", f"{i.deleted:,}",
                      f"{i.disk_bytes:,}")
    console.print(table)


@app.command()
def info(name: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """Show a collection's status."""
    store = _reader()
    try:
        _print_info(store.get_collection(name).info(), as_json)
    finally:
        store.close()


def _read_points(path: Path, ids_file: Path | None, payloads_file: Path | None, id_offset: int
                 ) -> tuple[list[Any], Any, list[Any] | None]:
    import numpy as np

    from aisd.core.errors import InvalidRequestError

    if path.suffix == ".npy":
        vectors = np.load(path)
        if ids_file is not None:
            ids: list[Any] = [line.strip() for line in ids_file.read_text(encoding="utf-8").splitlines() if line.strip()]
        else:
            ids = list(range(id_offset, id_offset + len(vectors)))
        payloads = None
        if payloads_file is not None:
            payloads = [json.loads(line) for line in payloads_file.read_text(encoding="utf-8").splitlines()
                        if line.strip()]
        return ids, vectors, payloads
    if path.suffix in (".jsonl", ".json"):
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        try:
            return [r["id"] for r in rows], [r["vector"] for r in rows], [r.get("payload") for r in rows]
        except KeyError as e:
            raise InvalidRequestError(f"{path}: every line needs 'id' and 'vector' (missing {e})", param="file") from None
    raise InvalidRequestError(f"{path}: expected a .npy matrix or a .jsonl file of {{id, vector, payload}}",
                              param="file")


@app.command()
def upsert(name: str, file: Path = typer.Argument(..., exists=True, help=".npy (n, dim) or .jsonl {id,vector,payload}"),
           ids: Path = typer.Option(None, help="With .npy: a text file with one id per line (default: row numbers)."),
           payloads: Path = typer.Option(None, help="With .npy: a .jsonl file with one payload object per line."),
           id_offset: int = typer.Option(0, help="With .npy and no --ids: first row's integer id."),
           batch_size: int = typer.Option(1000, min=1)) -> None:
    """Insert or replace points from a file, in batches, with a progress bar."""
    from aisd.core.progress import progress, use_rich_progress

    all_ids, vectors, pls = _read_points(file, ids, payloads, id_offset)
    services = _services()
    try:
        col = services.vector_store.get_collection(name)
        inserted = updated = 0
        with use_rich_progress():
            for start in progress(range(0, len(all_ids), batch_size), desc=f"upserting into {name}"):
                end = start + batch_size
                res = col.upsert(all_ids[start:end], vectors[start:end], pls[start:end] if pls else None)
                inserted, updated = inserted + res.inserted, updated + res.updated
        console.print(f"{inserted:,} inserted, {updated:,} updated; {col.count():,} points in {name}")
    finally:
        services.close()


@app.command()
def search(name: str, vector: str = typer.Option(None, help="Query vector as a JSON list."),
           text: str = typer.Option(None, help="Query text, embedded with the configured embedder."),
           k: int = typer.Option(10, min=1), filter: str = typer.Option(None, "--filter", help="JSON filter."),
           param: list[str] = typer.Option([], "--param", "-p", help="Search parameter, e.g. ef_search=128."),
           explain: bool = typer.Option(False, help="Print the query plan."),
           as_json: bool = typer.Option(False, "--json")) -> None:
    """Search a collection by vector or by text."""
    if (vector is None) == (text is None):
        raise typer.BadParameter("give exactly one of --vector or --text")
    if text is not None:
        from aisd.embed.base import embed_query

        query = embed_query(_services().embedder, text)
    else:
        query = json.loads(vector)
    flt = json.loads(filter) if filter else None
    store = _reader()
    try:
        col = store.get_collection(name)
        params = _parse_params(param)
        hits = col.search(query, k=k, filter=flt, params=params)
        plan = col.explain(flt, k, params) if explain else None
    finally:
        store.close()
    if as_json:
        console.print_json(json.dumps({"hits": [h.to_dict() for h in hits],
                                       **({"plan": plan.to_dict()} if plan else {})}))
        return
    table = Table("rank", "id", "score", "payload")
    for r, h in enumerate(hits, 1):
        table.add_row(str(r), str(h.id), f"{h.score:.4f}", json.dumps(h.payload)[:100] if h.payload else "")
    console.print(table)
    if plan is not None:
        console.print(f"plan: {plan.strategy} (selectivity {plan.selectivity:.4g}, {plan.candidates:,} candidates) "
                      f"- {plan.reason}")


@app.command()
def delete(name: str, ids: list[str] = typer.Argument(..., help="Point ids (integers are tried as int ids too)."),
           ) -> None:
    """Delete points by id."""
    services = _services()
    try:
        col = services.vector_store.get_collection(name)
        keys: list[Any] = []
        for i in ids:
            keys.append(i)
            if re.fullmatch(r"-?\d+", i):
                keys.append(int(i))
        res = col.delete(list(dict.fromkeys(keys)))
        console.print(f"deleted {res.deleted:,}; {col.count():,} points left in {name}")
    finally:
        services.close()


@app.command()
def drop(name: str, yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation.")) -> None:
    """Delete a whole collection."""
    if not yes:
        typer.confirm(f"drop collection {name!r} and all its points?", abort=True)
    services = _services()
    try:
        services.vector_store.drop_collection(name)
        console.print(f"dropped {name}")
    finally:
        services.close()


@app.command("payload-index")
def payload_index(name: str, field: str, kind: str = typer.Option("keyword", help="keyword | numeric")) -> None:
    """Index a payload field so filters on it do not scan every payload."""
    services = _services()
    try:
        col = services.vector_store.get_collection(name)
        col.create_payload_index(field, kind)
        console.print(f"payload indexes of {name}: {col.info().payload_indexes}")
    finally:
        services.close()


@app.command()
def compact(name: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """Reclaim the space of deleted and overwritten points and rebuild the index."""
    services = _services()
    try:
        rep = services.vector_store.get_collection(name).compact()
    finally:
        services.close()
    data = {"bytes_before": rep.bytes_before, "bytes_after": rep.bytes_after, "bytes_reclaimed": rep.bytes_reclaimed,
            "points_removed": rep.points_removed, "seconds": round(rep.seconds, 3)}
    if as_json:
        console.print_json(json.dumps(data))
    else:
        console.print(f"compacted {name}: {rep.bytes_before:,} -> {rep.bytes_after:,} bytes "
                      f"({rep.bytes_reclaimed:,} reclaimed, {rep.points_removed:,} dead points dropped) "
                      f"in {rep.seconds:.2f} s")


@app.command()
def advise(count: int = typer.Option(..., min=0, help="Number of vectors."),
           dim: int = typer.Option(..., min=1, help="Vector dimension."),
           memory: str = typer.Option(None, help="Memory budget, e.g. 512MB, 4GiB."),
           latency_ms: float = typer.Option(None, help="Target latency per query (ms)."),
           as_json: bool = typer.Option(False, "--json")) -> None:
    """Recommend an index kind and parameters (the index selection guide)."""
    from aisd.vector import advise as advise_fn

    adv = advise_fn(count, dim, memory_budget_bytes=_parse_bytes(memory), latency_target_ms=latency_ms)
    if as_json:
        console.print_json(json.dumps(adv.to_dict()))
        return
    table = Table(title=f"advice for {count:,} x {dim}", show_header=False)
    table.add_row("kind", adv.kind)
    table.add_row("params", json.dumps(adv.params))
    table.add_row("index memory", f"{adv.estimated_index_bytes / 2**20:,.1f} MiB")
    table.add_row("with original vectors", f"{adv.estimated_total_bytes / 2**20:,.1f} MiB")
    table.add_row("latency (est.)", f"{adv.estimated_latency_ms:.2f} ms/query")
    if adv.shards > 1:
        table.add_row("shards", str(adv.shards))
    for r in adv.reasons:
        table.add_row("why", r)
    console.print(table)
