"""``aisd serve`` option handling and model checks; the demo's failure paths (no model needed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aisd.app import demo_engine
from aisd.app.cli import app
from aisd.app.commands.serve import check_model
from aisd.core.errors import ModelNotFoundError


def test_check_model_accepts_files_and_rejects_unknown_names(tmp_path: Path) -> None:
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    assert check_model(str(gguf)) == str(gguf)
    with pytest.raises(ModelNotFoundError, match="neither a bundled model"):
        check_model(str(tmp_path / "missing.gguf"))


def test_serve_fails_fast_on_a_missing_model_and_passes_options(monkeypatch: pytest.MonkeyPatch,
                                                                 tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["serve", "--model", str(tmp_path / "nope.gguf"), "--port", "8123"])
    assert isinstance(result.exception, ModelNotFoundError)

    seen = {}

    def fake_run(asgi_app, host: str, port: int, log_level: str) -> None:
        seen.update(settings=asgi_app.state.settings, host=host, port=port)

    import uvicorn

    monkeypatch.setattr(uvicorn, "run", fake_run)
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    result = runner.invoke(app, ["serve", "--model", str(gguf), "--port", "8123", "--max-num-seqs", "4",
                                 "--no-prefix-caching", "--max-waiting-requests", "7", "--dtype", "bfloat16"])
    assert result.exit_code == 0, result.output
    eng = seen["settings"].engine
    assert seen["port"] == 8123 and seen["host"] == "127.0.0.1"
    assert (eng.model, eng.max_num_seqs, eng.enable_prefix_caching, eng.enable_chunked_prefill,
            eng.max_waiting_requests, eng.dtype) == (str(gguf), 4, False, True, 7, "bfloat16")
    seen.clear()
    result = runner.invoke(app, ["serve", "--model", str(gguf), "--dtype", "int4"])
    assert result.exit_code == 2 and "--dtype" in result.output and "int4" in result.output and not seen


def test_demo_says_why_when_the_model_is_missing(monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture) -> None:
    assert demo_engine.run(model="/definitely/not/a/model.gguf") is None
    assert "cannot run the engine demo" in capsys.readouterr().err


def test_demo_reports_a_server_that_died(tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    log.write_text("Traceback ...\nBoom: the model is corrupt\n")
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.exit(3)"])
    proc.wait(30)
    with pytest.raises(RuntimeError, match="exited with code 3") as info:
        demo_engine.wait_ready("http://127.0.0.1:9", proc, log, timeout=10)
    assert "the model is corrupt" in str(info.value)


def test_demo_result_tokens_per_second() -> None:
    r = demo_engine.DemoResult("abc", completion_tokens=11, ttft_s=0.5, total_s=1.5)
    assert r.tokens_per_s == pytest.approx(10.0)
    assert demo_engine.DemoResult("", 0, 1.0, 1.0).tokens_per_s == 0.0
