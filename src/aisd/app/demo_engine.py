"""``make demo``, part 1: start ``aisd serve`` in a subprocess, stream a chat answer over HTTP, print tokens/s.

Everything a user would do by hand: a real server process on a free port, ``/health`` polled until the engine is
ready, an OpenAI-style streaming request (server-sent events read with httpx), the answer printed token by token,
then time to first token and tokens/s. The server is always stopped, even on Ctrl-C or an error; a missing model
gives the command that installs it instead of a traceback.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import httpx

from aisd.core.errors import AisdError

DEFAULT_QUESTION = "In three sentences, what is a KV cache in a language model server and why does it help?"


@dataclass(frozen=True)
class DemoResult:
    text: str
    completion_tokens: int
    ttft_s: float
    total_s: float

    @property
    def tokens_per_s(self) -> float:
        """Decode speed after the first token (what a reader of the stream sees)."""
        decode = self.total_s - self.ttft_s
        return (self.completion_tokens - 1) / decode if self.completion_tokens > 1 and decode > 0 else 0.0


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def wait_ready(base: str, proc: subprocess.Popen, log_path: Path, timeout: float) -> None:
    """Poll /health until the engine reports ready; raise with the server log's tail if it exits or fails."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with code {proc.returncode}:\n{_tail(log_path)}")
        try:
            r = httpx.get(f"{base}/health", timeout=2)
            if r.status_code == 200:
                engine = r.json().get("engine", {})
                if engine.get("status") == "ready":
                    return
                if engine.get("status") == "error":
                    raise RuntimeError(f"the engine failed to start: {engine.get('error')}")
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise TimeoutError(f"the server was not ready after {timeout:.0f} s:\n{_tail(log_path)}")


def stop_server(proc: subprocess.Popen, timeout: float = 15) -> None:
    """Terminate the server subprocess, killing it if it does not exit within ``timeout`` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def stream_chat(base: str, question: str, max_tokens: int, out: TextIO | None = None) -> DemoResult:
    """Stream one chat answer from an OpenAI-compatible server, printing deltas as they arrive."""
    out = out or sys.stdout  # looked up now: sys.stdout may have been replaced since import
    body = {"messages": [{"role": "user", "content": question}], "max_tokens": max_tokens, "temperature": 0.0,
            "stream": True, "stream_options": {"include_usage": True}}
    parts: list[str] = []
    usage_tokens = 0
    t0 = time.perf_counter()
    ttft = None
    with httpx.stream("POST", f"{base}/v1/chat/completions", json=body, timeout=300) as r:
        if r.status_code != 200:
            r.read()
            raise RuntimeError(f"the server answered {r.status_code}: {r.text[:300]}")
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if "error" in chunk:
                raise RuntimeError(f"the stream failed: {chunk['error'].get('message')}")
            if chunk.get("usage"):
                usage_tokens = chunk["usage"]["completion_tokens"]
            for choice in chunk.get("choices", []):
                piece = (choice.get("delta") or {}).get("content") or ""
                if piece:
                    if ttft is None:
                        ttft = time.perf_counter() - t0
                    parts.append(piece)
                    out.write(piece)
                    out.flush()
    total = time.perf_counter() - t0
    out.write("\n")
    return DemoResult("".join(parts), usage_tokens, ttft if ttft is not None else total, total)


def run(question: str = DEFAULT_QUESTION, *, model: str | None = None, max_tokens: int = 96,
        startup_timeout: float = 300.0) -> DemoResult | None:
    """Run the demo; returns its result, or None (after saying why) when the server could not be used."""
    from aisd.app.commands.serve import check_model
    from aisd.app.settings import Settings

    model = model or Settings().engine.model
    print("== aisd engine demo: an OpenAI-compatible server on the bundled model")
    try:
        check_model(model)
    except AisdError as e:
        print(f"cannot run the engine demo: {e.message}", file=sys.stderr)
        return None
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", AISD_ENGINE__LOAD_ON_STARTUP="true")
    cmd = [sys.executable, "-m", "aisd.app", "serve", "--host", "127.0.0.1", "--port", str(port), "--model", model,
           "--log-level", "warning"]
    log_file = tempfile.NamedTemporaryFile("w+", prefix="aisd-serve-", suffix=".log", delete=False)  # noqa: SIM115
    log_path = Path(log_file.name)
    print(f"$ aisd serve --port {port} --model {model}")
    proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, env=env)
    try:
        t0 = time.perf_counter()
        wait_ready(base, proc, log_path, startup_timeout)
        print(f"server ready in {time.perf_counter() - t0:.1f} s; POST {base}/v1/chat/completions (stream)")
        print(f"\nuser: {question}\nassistant: ", end="", flush=True)
        result = stream_chat(base, question, max_tokens)
        print(f"\n{result.completion_tokens} tokens, time to first token {result.ttft_s * 1000:.0f} ms, "
              f"{result.tokens_per_s:.1f} tokens/s (streamed over HTTP, one request, "
              f"{os.cpu_count()} CPU cores)")
        return result
    except (RuntimeError, TimeoutError, httpx.HTTPError) as e:
        print(f"\nengine demo failed: {e}\n(server log: {log_path})", file=sys.stderr)
        return None
    finally:
        stop_server(proc)
        log_file.close()


if __name__ == "__main__":
    run()
