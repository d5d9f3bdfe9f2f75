"""OpenAIServing over the fake engine: prompts, sampling params, responses, chunks, logprobs, usage, errors."""

from __future__ import annotations

import asyncio

import pytest
from fake_engine import FILLER, FakeLLMEngine, Logprob
from serving_support import wait_until

from aisd.core.errors import InvalidRequestError, ModelNotFoundError, UnsupportedError
from aisd.engine.async_engine import AsyncLLMEngine
from aisd.engine.openai_convert import (
    chat_logprobs,
    completion_logprobs,
    resolve_max_tokens,
    sampling_kwargs,
    top_entries,
)
from aisd.engine.openai_serving import OpenAIServing
from aisd.llm.schema import ChatCompletionRequest, CompletionRequest


@pytest.fixture
def serving(engine: AsyncLLMEngine) -> OpenAIServing:
    return OpenAIServing(engine, aliases=("fake",))


def chat(**kw) -> ChatCompletionRequest:
    kw.setdefault("messages", [{"role": "user", "content": "hi"}])
    return ChatCompletionRequest(**kw)


def chat_prompt_len(serving: OpenAIServing, req: ChatCompletionRequest) -> int:
    return len(serving.chat_prompt_ids(req))


def greedy(prompt_len: int, n: int) -> str:
    return "".join(FILLER[(prompt_len + i) % len(FILLER)] for i in range(n))


def test_resolve_max_tokens_defaults_and_context_errors() -> None:
    assert resolve_max_tokens(10, None, 100, default=None, prompt_param="messages") == 90
    assert resolve_max_tokens(10, None, 100, default=16, prompt_param="prompt") == 16
    assert resolve_max_tokens(95, None, 100, default=16, prompt_param="prompt") == 5
    assert resolve_max_tokens(10, 20, 100, default=None, prompt_param="messages") == 20
    with pytest.raises(InvalidRequestError) as info:
        resolve_max_tokens(100, None, 100, default=None, prompt_param="messages")
    assert info.value.param == "messages" and "maximum context length is 100" in info.value.message
    with pytest.raises(InvalidRequestError) as info:
        resolve_max_tokens(10, 91, 100, default=None, prompt_param="messages")
    assert info.value.param == "max_tokens" and "101 tokens" in info.value.message


def test_sampling_kwargs_use_openai_defaults_and_vllm_extras() -> None:
    kw = sampling_kwargs(chat(), max_tokens=7, logprobs=None)
    assert kw["temperature"] == 1.0 and kw["top_p"] == 1.0 and kw["top_k"] == -1 and kw["n"] == 1
    assert kw["max_tokens"] == 7 and kw["stop"] is None and kw["repetition_penalty"] == 1.0
    kw = sampling_kwargs(chat(temperature=0, top_k=5, min_p=0.1, stop="END", seed=3, n=2, ignore_eos=True,
                              presence_penalty=0.5, stop_token_ids=[7]), max_tokens=3, logprobs=2)
    assert (kw["temperature"], kw["top_k"], kw["min_p"], kw["stop"], kw["seed"], kw["n"]) == (0, 5, 0.1, ["END"],
                                                                                               3, 2)
    assert kw["ignore_eos"] and kw["presence_penalty"] == 0.5 and kw["stop_token_ids"] == [7] and kw["logprobs"] == 2


def test_chat_answer_usage_and_cached_tokens_on_repeat(serving: OpenAIServing) -> None:
    req = chat(messages=[{"role": "system", "content": "s" * 40}, {"role": "user", "content": "hello"}],
               temperature=0, max_tokens=6)
    first = asyncio.run(serving.chat(req))
    n = chat_prompt_len(serving, req)
    assert first.choices[0].message.content == greedy(n, 6)
    assert first.choices[0].finish_reason == "length"
    assert first.usage.prompt_tokens == n and first.usage.completion_tokens == 6 and first.usage.total_tokens == n + 6
    assert first.usage.prompt_tokens_details == {"cached_tokens": 0}
    second = asyncio.run(serving.chat(req))
    cached = second.usage.prompt_tokens_details["cached_tokens"]
    assert cached == (n // 4) * 4 and cached > 0  # full 4-token blocks of the repeated prompt
    assert second.model == "fake-model" and second.id.startswith("chatcmpl-")


def test_chat_stop_string_and_n(serving: OpenAIServing) -> None:
    req = chat(temperature=0, max_tokens=80, stop=["fox"], n=2)
    res = asyncio.run(serving.chat(req))
    assert [c.index for c in res.choices] == [0, 1]
    for c in res.choices:
        assert "fox" not in c.message.content and c.finish_reason == "stop"
    assert res.usage.completion_tokens == sum(len(c.message.content) for c in res.choices) + 6


def test_chat_stream_deltas_concatenate_to_the_full_answer(serving: OpenAIServing) -> None:
    req = chat(temperature=0, max_tokens=9, n=2, stream=True, stream_options={"include_usage": True})

    async def run() -> list:
        cid, sub = await serving.start_chat(req)
        return [c async for c in serving.chat_chunks(req, cid, sub)]

    chunks = asyncio.run(run())
    n = chat_prompt_len(serving, req)
    assert len({c.id for c in chunks}) == 1
    assert [c.choices[0].delta.role for c in chunks[:2]] == ["assistant", "assistant"]
    for idx in (0, 1):
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices and c.choices[0].index == idx)
        assert text == greedy(n, 9)
        reasons = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].index == idx]
        assert reasons[-1] == "length" and reasons.count("length") == 1
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 18
    assert all(c.usage is None for c in chunks[:-1])


def test_chat_logprobs_shape(serving: OpenAIServing) -> None:
    res = asyncio.run(serving.chat(chat(temperature=0, max_tokens=3, logprobs=True, top_logprobs=2)))
    content = res.choices[0].logprobs.content
    assert [t.token for t in content] == list(res.choices[0].message.content)
    for t in content:
        assert t.logprob < 0 and len(t.top_logprobs) == 2 and t.bytes == list(t.token.encode())
        assert t.top_logprobs[0].token == t.token  # the fake's sampled token is ranked 1
    with pytest.raises(InvalidRequestError) as info:
        asyncio.run(serving.chat(chat(top_logprobs=2)))
    assert info.value.param == "top_logprobs"


def test_logprob_helpers_rank_order_and_offsets() -> None:
    class Tok:
        def decode(self, ids: list[int]) -> str:
            return "".join(chr(i) for i in ids)

    steps = [{65: Logprob(-2.0, 3, "A"), 66: Logprob(-0.1, 1, "B"), 67: Logprob(-1.0, 2, None)}]
    assert [t for t, _ in top_entries(steps[0], 2)] == [66, 67]
    lp = chat_logprobs([65], steps, 2, Tok())
    assert lp.content[0].token == "A" and lp.content[0].logprob == -2.0
    assert [t.token for t in lp.content[0].top_logprobs] == ["B", "C"]
    legacy = completion_logprobs([65, 66], steps * 2, 1, Tok(), text_offset=5)
    assert legacy.tokens == ["A", "B"] and legacy.token_logprobs == [-2.0, -0.1]
    assert legacy.top_logprobs == [{"B": -0.1}, {"B": -0.1}] and legacy.text_offset == [5, 6]


def test_model_names_and_404(serving: OpenAIServing) -> None:
    serving.check_model(None)
    serving.check_model("fake-model")
    serving.check_model("fake")
    with pytest.raises(ModelNotFoundError) as info:
        serving.check_model("gpt-4")
    assert info.value.status_code == 404 and info.value.code == "model_not_found" and info.value.param == "model"
    assert serving.models().data[0].id == "fake-model" and serving.models().data[0].max_model_len == 256


def test_completions_batch_echo_and_logprobs(serving: OpenAIServing) -> None:
    res = asyncio.run(serving.completion(CompletionRequest(prompt=["ab", "abcd"], temperature=0, max_tokens=3,
                                                           echo=True, n=2)))
    assert [c.index for c in res.choices] == [0, 1, 2, 3]
    assert res.choices[0].text == "ab" + greedy(2, 3) and res.choices[2].text == "abcd" + greedy(4, 3)
    assert res.usage.prompt_tokens == 6 and res.usage.completion_tokens == 12
    res = asyncio.run(serving.completion(CompletionRequest(prompt=[104, 105], temperature=0, logprobs=1)))
    assert len(res.choices[0].text) == 16  # OpenAI's default max_tokens for completions
    assert res.choices[0].logprobs.text_offset[:3] == [0, 1, 2]
    with pytest.raises(UnsupportedError):
        asyncio.run(serving.completion(CompletionRequest(prompt="x", suffix="y")))
    with pytest.raises(InvalidRequestError) as info:
        asyncio.run(serving.completion(CompletionRequest(prompt="x" * 300)))
    assert info.value.param == "prompt"


def test_completion_stream_interleaves_prompts(serving: OpenAIServing) -> None:
    req = CompletionRequest(prompt=["ab", "abc"], temperature=0, max_tokens=4, stream=True,
                            stream_options={"include_usage": True})

    async def run() -> list:
        cid, prompts, sub = await serving.start_completion(req)
        return [c async for c in serving.completion_chunks(req, cid, prompts, sub)]

    chunks = asyncio.run(run())
    for idx, plen in ((0, 2), (1, 3)):
        assert "".join(c.choices[0].text for c in chunks if c.choices and c.choices[0].index == idx) == greedy(plen, 4)
    assert chunks[-1].usage.completion_tokens == 8 and chunks[-1].usage.prompt_tokens == 5


def test_a_second_submit_failing_aborts_the_first(fake: FakeLLMEngine, serving: OpenAIServing,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    fake.step_delay = 0.01  # keep request 0 running while request 1 is rejected
    real_add = fake.add_request

    def add(request_id: str, prompt, params, **kw) -> None:
        if request_id.endswith("-1"):
            raise InvalidRequestError("rejected by the engine", param="prompt")
        real_add(request_id, prompt, params, **kw)

    monkeypatch.setattr(fake, "add_request", add)
    with pytest.raises(InvalidRequestError, match="rejected"):
        asyncio.run(serving.completion(CompletionRequest(prompt=["ab", "cd"], max_tokens=200)))
    assert wait_until(lambda: any(rid.endswith("-0") for rid in fake.aborted))
    assert wait_until(lambda: not fake.has_unfinished_requests())
