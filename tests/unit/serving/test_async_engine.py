"""AsyncLLMEngine over the fake engine: streaming, concurrency, cancellation frees blocks, 429, failures, metrics."""

from __future__ import annotations

import asyncio

import pytest
from fake_engine import FILLER, FakeLLMEngine, SamplingParams
from prometheus_client import REGISTRY
from serving_support import wait_until

from aisd.core.errors import ConflictError, InvalidRequestError, RateLimitError, ServiceUnavailableError
from aisd.engine.async_engine import AsyncEngineConfig, AsyncLLMEngine, retry_after_seconds


def greedy(prompt_len: int, n: int) -> str:
    return "".join(FILLER[(prompt_len + i) % len(FILLER)] for i in range(n))


def sample(name: str, model: str = "fake-model", **labels: str) -> float:
    return REGISTRY.get_sample_value(name, {"model_name": model, **labels}) or 0.0


def test_generate_streams_cumulative_outputs_until_finished(engine: AsyncLLMEngine) -> None:
    async def run() -> list:
        return [o async for o in engine.generate("r1", "hello", SamplingParams(temperature=0, max_tokens=5))]

    outs = asyncio.run(run())
    assert len(outs) == 5
    assert [len(o.outputs[0].token_ids) for o in outs] == [1, 2, 3, 4, 5]
    assert outs[-1].finished and not any(o.finished for o in outs[:-1])
    assert outs[-1].outputs[0].text == greedy(5, 5)
    assert outs[-1].outputs[0].finish_reason == "length"


def test_many_concurrent_requests_all_complete_on_one_engine_thread(fake: FakeLLMEngine,
                                                                     engine: AsyncLLMEngine) -> None:
    async def one(i: int) -> str:
        out = await (await engine.add_request(f"r{i}", "x" * (i + 1), SamplingParams(temperature=0,
                                                                                      max_tokens=3))).final()
        return out.outputs[0].text

    async def run() -> list[str]:
        return await asyncio.gather(*(one(i) for i in range(20)))

    texts = asyncio.run(run())  # the fake raises if two threads ever call it at once
    assert texts == [greedy(i + 1, 3) for i in range(20)]
    assert wait_until(lambda: engine.get_stats().num_free_blocks == fake.num_blocks)
    assert engine.num_in_flight() == 0


def test_cancelling_a_stream_aborts_the_request_and_frees_its_blocks() -> None:
    fake = FakeLLMEngine(step_delay=0.01)
    engine = AsyncLLMEngine(fake)
    engine.start()
    try:
        async def run() -> None:
            async def consume() -> None:
                async for _ in engine.generate("victim", "abc", SamplingParams(temperature=0, max_tokens=10_000)):
                    pass

            task = asyncio.create_task(consume())
            assert await asyncio.to_thread(wait_until, lambda: fake.stats.num_running == 1)
            assert fake.stats.num_free_blocks < fake.num_blocks
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(run())
        assert wait_until(lambda: "victim" in fake.aborted)
        assert wait_until(lambda: engine.get_stats().num_free_blocks == engine.get_stats().num_total_blocks)
        assert not fake.has_unfinished_requests()
    finally:
        engine.close()


def test_breaking_out_of_the_loop_aborts(fake: FakeLLMEngine, engine: AsyncLLMEngine) -> None:
    fake.step_delay = 0.01

    async def run() -> None:
        stream = await engine.add_request("early", "abc", SamplingParams(temperature=0, max_tokens=10_000))
        it = aiter(stream)
        await anext(it)
        await it.aclose()

    asyncio.run(run())
    assert wait_until(lambda: "early" in fake.aborted)
    assert wait_until(lambda: engine.get_stats().num_free_blocks == fake.num_blocks)


def test_full_waiting_queue_raises_rate_limit_with_retry_after() -> None:
    fake = FakeLLMEngine(max_num_seqs=1, step_delay=0.01)
    engine = AsyncLLMEngine(fake, AsyncEngineConfig(max_waiting_requests=1))
    engine.start()
    try:
        async def run() -> RateLimitError:
            params = SamplingParams(temperature=0, max_tokens=10_000)
            running = await engine.add_request("a", "abc", params)
            waiting = await engine.add_request("b", "abc", params)
            assert await asyncio.to_thread(wait_until, lambda: engine.get_stats().num_waiting == 1)
            with pytest.raises(RateLimitError) as info:
                await engine.add_request("c", "abc", params)
            engine.abort(running.request_id)
            engine.abort(waiting.request_id)
            return info.value

        err = asyncio.run(run())
        assert err.status_code == 429 and err.code == "queue_full"
        assert int(err.headers["Retry-After"]) >= 1
        assert "1 requests waiting" in err.message
    finally:
        engine.close()


def test_retry_after_is_waiting_over_throughput_clamped() -> None:
    assert retry_after_seconds(10, 0.0, 60) == 1  # no throughput measured yet
    assert retry_after_seconds(10, 2.0, 60) == 5
    assert retry_after_seconds(1000, 0.5, 60) == 60
    assert retry_after_seconds(1, 100.0, 60) == 1


def test_engine_validation_errors_reach_the_caller(fake: FakeLLMEngine, engine: AsyncLLMEngine) -> None:
    fake.step_delay = 0.01  # keep "dup" running while the second one arrives

    async def run() -> None:
        with pytest.raises(InvalidRequestError) as info:
            await engine.add_request("long", "x" * 1000, SamplingParams())
        assert info.value.param == "prompt"
        stream = await engine.add_request("dup", "abc", SamplingParams(max_tokens=10_000))
        with pytest.raises(ConflictError):
            await engine.add_request("dup", "abc", SamplingParams())
        engine.abort(stream.request_id)

    asyncio.run(run())


def test_a_failing_step_fails_in_flight_requests_and_marks_the_engine_dead() -> None:
    fake = FakeLLMEngine(step_delay=0.01)
    engine = AsyncLLMEngine(fake)
    engine.start()
    try:
        async def run() -> None:
            stream = await engine.add_request("r", "abc", SamplingParams(max_tokens=10_000))
            fake.fail_next_step = RuntimeError("kernel exploded")
            with pytest.raises(ServiceUnavailableError, match="kernel exploded"):
                async for _ in stream:
                    pass
            with pytest.raises(ServiceUnavailableError, match="stopped after an error"):
                await engine.add_request("next", "abc", SamplingParams())

        asyncio.run(run())
        assert isinstance(engine.errored, RuntimeError)
    finally:
        engine.close()


def test_close_ends_in_flight_streams() -> None:
    fake = FakeLLMEngine(step_delay=0.01)
    engine = AsyncLLMEngine(fake)
    engine.start()

    async def run() -> None:
        stream = await engine.add_request("r", "abc", SamplingParams(max_tokens=10_000))
        await asyncio.to_thread(engine.close)
        with pytest.raises(ServiceUnavailableError, match="shutting down"):
            async for _ in stream:
                pass

    asyncio.run(run())
    assert not engine.is_running


def test_load_is_called_once_on_start_and_failures_are_remembered() -> None:
    fake = FakeLLMEngine()
    engine = AsyncLLMEngine(fake, load=True)
    assert not engine.is_loaded
    engine.start()
    engine.start()
    assert fake.loaded and engine.is_loaded and engine.is_running
    engine.close()

    class Broken(FakeLLMEngine):
        def load(self) -> None:
            raise FileNotFoundError("model.gguf is missing")

    broken = AsyncLLMEngine(Broken(), load=True)
    with pytest.raises(FileNotFoundError):
        broken.start()
    with pytest.raises(ServiceUnavailableError, match="model.gguf is missing"):
        asyncio.run(broken.astart())


def test_metrics_record_latencies_tokens_and_gauges() -> None:
    fake = FakeLLMEngine(model_name="metrics-model")
    engine = AsyncLLMEngine(fake)
    engine.start()
    before = {n: sample(n, "metrics-model") for n in (
        "aisd:time_to_first_token_seconds_count", "aisd:inter_token_latency_seconds_count",
        "aisd:e2e_request_latency_seconds_count", "aisd:request_queue_time_seconds_count",
        "aisd:prompt_tokens_total", "aisd:generation_tokens_total", "aisd:prefix_cache_queries_total",
        "aisd:prefix_cache_hits_total")}
    try:
        async def run() -> None:
            for _ in range(2):  # the second request hits the fake's prefix cache
                await (await engine.add_request(None, "abcdefgh", SamplingParams(temperature=0,
                                                                                 max_tokens=4))).final()

        asyncio.run(run())
        assert wait_until(lambda: sample("aisd:generation_tokens_total", "metrics-model")
                          - before["aisd:generation_tokens_total"] == 8)
        delta = {n: sample(n, "metrics-model") - v for n, v in before.items()}
        assert delta["aisd:time_to_first_token_seconds_count"] == 2
        assert delta["aisd:inter_token_latency_seconds_count"] == 6  # 3 gaps per 4-token request
        assert delta["aisd:e2e_request_latency_seconds_count"] == 2
        assert delta["aisd:request_queue_time_seconds_count"] == 2
        assert delta["aisd:prompt_tokens_total"] == 16
        assert delta["aisd:prefix_cache_queries_total"] == 16
        assert delta["aisd:prefix_cache_hits_total"] == 8
        assert sample("aisd:request_success_total", "metrics-model", finished_reason="length") >= 2
        assert sample("aisd:num_requests_running", "metrics-model") == 0
        assert sample("aisd:kv_cache_usage_perc", "metrics-model") == 0.0
    finally:
        engine.close()


def test_counter_increment_handles_engine_restarts() -> None:
    from aisd.engine.metrics import counter_increment

    assert counter_increment(10, 4) == 6
    assert counter_increment(3, 10) == 3  # the engine's totals restarted from zero
    assert counter_increment(5, 5) == 0
