"""The layer contract of DESIGN.md, checked by walking every module's imports (ast), plus heavy-import checks.

app -> engine | rag | gateway | evals -> llm | embed | vector | search | features | experiments | planner
    -> assets -> core. Siblings in a layer are independent; imports only go downward.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "aisd"

LAYERS: list[set[str]] = [
    {"app"},
    {"engine", "rag", "gateway", "evals"},
    {"llm", "embed", "vector", "search", "features", "experiments", "planner"},
    {"assets"},
    {"core"},
]
HEAVY = {"torch", "transformers", "sentence_transformers"}
HEAVY_ALLOWED = {"engine", "embed"}
WEB = {"fastapi", "typer", "uvicorn", "starlette"}


def _layer(pkg: str) -> int:
    for i, layer in enumerate(LAYERS):
        if pkg in layer:
            return i
    raise AssertionError(f"package aisd.{pkg} is not in any layer of DESIGN.md; add it to LAYERS")


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).parts
        if len(rel) > 1:
            out.append((rel[0], path))
    return out


def test_every_package_is_in_a_layer() -> None:
    for pkg in {p for p, _ in _modules()}:
        _layer(pkg)


def test_imports_only_go_downward_and_siblings_are_independent() -> None:
    bad = []
    for pkg, path in _modules():
        mine = _layer(pkg)
        for name in _imports(path):
            parts = name.split(".")
            if parts[0] != "aisd" or len(parts) < 2 or parts[1] == pkg or parts[1] == "__init__":
                continue
            other = parts[1]
            if not (SRC / other).is_dir():
                continue
            if _layer(other) <= mine:
                bad.append(f"{path.relative_to(SRC)} imports {name}")
    assert not bad, "layer violations:\n" + "\n".join(bad)


def test_heavy_and_web_imports_stay_in_their_packages() -> None:
    bad = []
    for pkg, path in _modules():
        for name in _imports(path):
            root = name.split(".")[0]
            if root in HEAVY and pkg not in HEAVY_ALLOWED:
                bad.append(f"{path.relative_to(SRC)} imports {name} (torch-family only in engine/ and embed/)")
            if root in WEB and pkg != "app":
                bad.append(f"{path.relative_to(SRC)} imports {name} (FastAPI/Typer only in app/)")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("module", ["aisd.features", "aisd.experiments", "aisd.planner", "aisd.vector",
                                    "aisd.core", "aisd.llm", "aisd.search"])
def test_light_systems_do_not_load_torch(module: str) -> None:
    code = f"import sys, {module}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", f"importing {module} loaded torch"
