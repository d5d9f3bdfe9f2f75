"""Helpers of the serving tests: app wiring around a fake engine and a live uvicorn server."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

from fake_engine import FakeLLMEngine

from aisd.app.settings import EngineSettings, Settings
from aisd.app.wiring import Services
from aisd.engine.async_engine import AsyncEngineConfig, AsyncLLMEngine


def make_services(tmp_path: Path, fake: FakeLLMEngine, **config: object) -> Services:
    settings = Settings(home=tmp_path, engine=EngineSettings(model="fake-model", load_on_startup=True))
    services = Services(settings)
    services.engine = AsyncLLMEngine(fake, AsyncEngineConfig(**config))  # type: ignore[arg-type]
    return services


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """uvicorn in a thread (a real socket, so that client disconnects reach the app)."""

    def __init__(self, app: object) -> None:
        import uvicorn

        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(20)


def wait_until(cond, timeout: float = 10.0, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(interval)
    return cond()
