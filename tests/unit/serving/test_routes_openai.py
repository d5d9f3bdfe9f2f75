"""The HTTP routes over the fake engine, driven by the official ``openai`` client and by raw requests."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from fake_engine import FILLER, FakeLLMEngine, SamplingParams
from fastapi.testclient import TestClient
from serving_support import LiveServer, make_services, wait_until

from aisd.app.server import create_app
from aisd.app.wiring import Services
from aisd.engine.metrics import METRIC_NAMES

MSG = [{"role": "user", "content": "Say something."}]


@pytest.fixture
def services(tmp_path: Path, fake: FakeLLMEngine) -> Iterator[Services]:
    services = make_services(tmp_path, fake, max_waiting_requests=64)
    yield services
    services.engine.close()


@pytest.fixture
def client(services: Services) -> TestClient:
    return TestClient(create_app(services.settings, services))


@pytest.fixture
def oai(client: TestClient) -> openai.OpenAI:
    return openai.OpenAI(base_url="http://testserver/v1", api_key="unused", http_client=client, max_retries=0)


def test_models_lists_the_served_model(oai: openai.OpenAI) -> None:
    models = oai.models.list()
    assert [m.id for m in models.data] == ["fake-model"]


def test_chat_with_the_official_client(oai: openai.OpenAI) -> None:
    res = oai.chat.completions.create(model="fake-model", messages=MSG, max_tokens=5, temperature=0)
    assert res.object == "chat.completion" and res.choices[0].message.role == "assistant"
    assert len(res.choices[0].message.content) == 5 and res.choices[0].finish_reason == "length"
    assert res.usage.completion_tokens == 5 and res.usage.prompt_tokens > 0
    again = oai.chat.completions.create(model="fake-model", messages=MSG, max_tokens=5, temperature=0)
    assert again.usage.prompt_tokens_details.cached_tokens > 0
    assert again.choices[0].message.content == res.choices[0].message.content


def test_chat_streaming_n_and_usage(oai: openai.OpenAI) -> None:
    stream = oai.chat.completions.create(model="fake-model", messages=MSG, max_tokens=6, temperature=0, n=2,
                                         stream=True, stream_options={"include_usage": True})
    texts = {0: "", 1: ""}
    reasons: dict[int, str] = {}
    usage = None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
            if choice.finish_reason:
                reasons[choice.index] = choice.finish_reason
    assert texts[0] == texts[1] and len(texts[0]) == 6
    assert reasons == {0: "length", 1: "length"}
    assert usage is not None and usage.completion_tokens == 12


def test_chat_logprobs_and_stop(oai: openai.OpenAI) -> None:
    res = oai.chat.completions.create(model="fake-model", messages=MSG, max_tokens=4, temperature=0, logprobs=True,
                                      top_logprobs=3)
    lp = res.choices[0].logprobs.content
    assert len(lp) == 4 and all(len(t.top_logprobs) == 3 for t in lp)
    assert "".join(t.token for t in lp) == res.choices[0].message.content
    res = oai.chat.completions.create(model="fake-model", messages=MSG, max_tokens=100, temperature=0, stop=["dog"])
    assert res.choices[0].finish_reason == "stop" and "dog" not in res.choices[0].message.content


def test_completions_plain_and_streaming(oai: openai.OpenAI) -> None:
    res = oai.completions.create(model="fake-model", prompt="abc", max_tokens=4, temperature=0, logprobs=2)
    assert res.choices[0].text == "".join(FILLER[(3 + i) % len(FILLER)] for i in range(4))
    assert res.choices[0].logprobs.tokens == list(res.choices[0].text)
    assert res.usage.prompt_tokens == 3 and res.usage.completion_tokens == 4
    text = "".join(c.choices[0].text for c in oai.completions.create(
        model="fake-model", prompt="abc", max_tokens=4, temperature=0, stream=True) if c.choices)
    assert text == res.choices[0].text


@pytest.mark.parametrize(("body", "param"), [
    ({"messages": [{"role": "robot", "content": "hi"}]}, "messages.0.role"),
    ({"messages": MSG, "max_tokens": -1}, "max_tokens"),
    ({"messages": MSG, "max_tokens": "many"}, "max_tokens"),
    ({"messages": MSG, "temperature": 5}, "temperature"),
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "user", "content": "x" * 400}]}, "messages"),
    ({"messages": MSG, "max_tokens": 1000}, "max_tokens"),
    ({"messages": MSG, "top_k": -5}, "top_k"),
])
def test_malformed_chat_requests_get_openai_400s_naming_the_field(client: TestClient, body: dict,
                                                                  param: str) -> None:
    r = client.post("/v1/chat/completions", json=body)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and err["param"] == param and err["message"]


def test_unknown_model_is_404_model_not_found(client: TestClient, oai: openai.OpenAI) -> None:
    r = client.post("/v1/chat/completions", json={"model": "gpt-17", "messages": MSG})
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        oai.completions.create(model="gpt-17", prompt="x")
    with pytest.raises(openai.BadRequestError):
        oai.completions.create(model="fake-model", prompt="x", max_tokens=0)


def test_full_queue_answers_429_with_retry_after(tmp_path: Path) -> None:
    fake = FakeLLMEngine(max_num_seqs=0, step_delay=0.02)  # admits nothing: every request waits
    services = make_services(tmp_path, fake, max_waiting_requests=1)
    try:
        services.engine.start()
        asyncio.run(services.engine.add_request("blocker", "abc", SamplingParams()))
        assert wait_until(lambda: services.engine.get_stats().num_waiting == 1)
        client = TestClient(create_app(services.settings, services))
        r = client.post("/v1/completions", json={"prompt": "hello"})
        assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
        assert r.json()["error"]["type"] == "rate_limit_error"
    finally:
        services.engine.close()


def test_metrics_and_health(client: TestClient) -> None:
    client.post("/v1/completions", json={"prompt": "hello", "max_tokens": 3})
    text = client.get("/metrics").text
    for name in METRIC_NAMES:
        assert name in text, name
    assert 'aisd:generation_tokens_total{model_name="fake-model"}' in text
    health = client.get("/health").json()["engine"]
    assert health["status"] == "ready" and health["model"] == "fake-model"
    assert health["num_free_blocks"] == health["num_total_blocks"]


def test_an_engine_that_cannot_load_reports_503_and_health_error(tmp_path: Path) -> None:
    class Broken(FakeLLMEngine):
        def load(self) -> None:
            raise FileNotFoundError("weights.gguf: no such file")

    services = make_services(tmp_path, Broken())
    services.engine._needs_load = True
    with TestClient(create_app(services.settings, services)) as client:  # startup hook logs, does not crash
        r = client.post("/v1/chat/completions", json={"messages": MSG})
        assert r.status_code == 503 and "weights.gguf" in r.json()["error"]["message"]
        health = client.get("/health").json()["engine"]
        assert health["status"] == "error" and "weights.gguf" in health["error"]


@pytest.mark.parametrize("stream", [True, False])
def test_client_disconnect_aborts_and_frees_blocks(tmp_path: Path, stream: bool) -> None:
    fake = FakeLLMEngine(step_delay=0.01, max_model_len=100_000, num_blocks=100_000)
    services = make_services(tmp_path, fake)
    try:
        with LiveServer(create_app(services.settings, services)) as server:
            body = {"messages": MSG, "max_tokens": 50_000, "stream": stream}
            if stream:
                with httpx.stream("POST", f"{server.url}/v1/chat/completions", json=body, timeout=10) as r:
                    events = (line[6:] for line in r.iter_lines() if line.startswith("data: "))
                    got = [json.loads(next(events)) for _ in range(3)]
                    assert got[0]["object"] == "chat.completion.chunk"
                    assert fake.stats.num_running == 1
            else:
                with pytest.raises(httpx.ReadTimeout):
                    httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=0.5)
            assert wait_until(lambda: len(fake.aborted) == 1, timeout=10)
            assert wait_until(lambda: services.engine.get_stats().num_free_blocks == fake.num_blocks)
            assert services.engine.get_stats().num_running == 0 and services.engine.num_in_flight() == 0
    finally:
        services.engine.close()


def test_health_before_the_engine_starts(tmp_path: Path) -> None:
    services = make_services(tmp_path, FakeLLMEngine())
    services.settings.engine.load_on_startup = False
    with TestClient(create_app(services.settings, services)) as client:
        assert client.get("/health").json()["engine"] == {"status": "not loaded", "model": "fake-model"}
        services.engine.is_loading = True
        assert client.get("/health").json()["engine"]["status"] == "loading"
        services.engine.is_loading = False
        assert client.get("/v1/models").status_code == 200  # the first /v1 call starts the engine
        assert client.get("/health").json()["engine"]["status"] == "ready"
