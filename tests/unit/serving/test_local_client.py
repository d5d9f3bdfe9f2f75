"""LocalClient: the LLMClient protocol over the in-process async engine (fake model)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from fake_engine import FakeLLMEngine
from serving_support import wait_until

from aisd.engine.async_engine import AsyncLLMEngine
from aisd.engine.client import LocalClient
from aisd.llm.client import LLMClient, ask, chat_request


def test_is_an_llm_client_and_chats(engine: AsyncLLMEngine) -> None:
    client = LocalClient(engine)
    try:
        assert isinstance(client, LLMClient)
        assert client.model_name == "fake-model" and client.context_window() == 256
        res = client.chat(chat_request([{"role": "user", "content": "hi"}], max_tokens=4, temperature=0))
        assert len(res.text) == 4 and res.usage.completion_tokens == 4
        assert len(ask(client, "hello", system="be brief", max_tokens=3, temperature=0)) == 3
    finally:
        client.close()
    assert engine.is_running  # the client did not own the engine


def test_stream_and_early_break_abort(fake: FakeLLMEngine, engine: AsyncLLMEngine) -> None:
    client = LocalClient(engine)
    try:
        req = chat_request([{"role": "user", "content": "hi"}], max_tokens=5, temperature=0)
        chunks = list(client.chat_stream(req))
        assert "".join(c.choices[0].delta.content or "" for c in chunks) == client.chat(req).text
        assert chunks[-1].choices[0].finish_reason == "length"
        fake.step_delay = 0.01  # slow enough that the break comes before the end
        long = chat_request([{"role": "user", "content": "hi"}], max_tokens=200)
        for i, _ in enumerate(client.chat_stream(long)):
            if i == 2:
                break
        assert wait_until(lambda: len(fake.aborted) == 1)
        assert wait_until(lambda: engine.get_stats().num_free_blocks == fake.num_blocks)
    finally:
        client.close()


def test_many_threads_share_one_client(engine: AsyncLLMEngine) -> None:
    client = LocalClient(engine)
    try:
        def one(i: int) -> str:
            return client.chat(chat_request([{"role": "user", "content": "q" * i}], max_tokens=3,
                                            temperature=0)).text

        with ThreadPoolExecutor(8) as pool:
            texts = list(pool.map(one, range(1, 17)))
        assert all(len(t) == 3 for t in texts)
    finally:
        client.close()


def test_owned_engine_is_loaded_on_first_use_and_closed() -> None:
    fake = FakeLLMEngine()
    client = LocalClient(AsyncLLMEngine(fake, load=True), owns_engine=True)
    assert not fake.loaded
    client.chat(chat_request([{"role": "user", "content": "hi"}], max_tokens=2))
    assert fake.loaded and client.engine.is_running
    client.close()
    assert not client.engine.is_running
