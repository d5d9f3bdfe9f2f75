"""LLMEngine end to end on tiny random models: parity with transformers, batching, chunked prefill, preemption,
priority, abort, n > 1, prefix caching, stop rules, logprobs, seeds and errors."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from aisd.core.errors import InvalidRequestError
from aisd.engine import LLM, EngineConfig, LLMEngine, SamplingParams

from .conftest import hf_greedy  # noqa: F401 (plain helper, not a fixture)

torch.set_num_threads(1)
GREEDY = SamplingParams(temperature=0, max_tokens=8, ignore_eos=True)


def prompts(n: int, lo: int = 1, hi: int = 40, seed: int = 0) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(256) for _ in range(rng.randint(lo, hi))] for _ in range(n)]


def engine(path: Path, **kw) -> LLMEngine:
    kw.setdefault("num_gpu_blocks", 256)
    kw.setdefault("block_size", 4)
    return LLMEngine.from_config(EngineConfig(model=str(path), **kw))


def run(eng: LLMEngine, reqs: list[tuple[str, list[int], SamplingParams]], **add_kw) -> dict:
    for rid, p, sp in reqs:
        eng.add_request(rid, p, sp, **add_kw)
    done = {}
    while eng.has_unfinished_requests():
        for out in eng.step():
            if out.finished:
                done[out.request_id] = out
    return done


@pytest.fixture(scope="module")
def llama(tiny_llama: Path) -> LLMEngine:
    return engine(tiny_llama)


def test_greedy_matches_transformers_llama(tiny_llama: Path, hf_tiny_llama) -> None:
    ps = prompts(10)
    outs = LLM(str(tiny_llama), num_gpu_blocks=256, block_size=4).generate(ps, GREEDY)
    for p, o in zip(ps, outs, strict=True):
        assert o.outputs[0].token_ids == hf_greedy(hf_tiny_llama, p, 8)


def test_greedy_matches_transformers_qwen2_with_biases_and_tied_embeddings(tiny_qwen2: Path) -> None:
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(str(tiny_qwen2), dtype=torch.float32).eval()
    eng = engine(tiny_qwen2)
    assert eng.model_config.attention_bias and eng.model_config.tie_word_embeddings
    ps = prompts(6, seed=3)
    done = run(eng, [(str(i), p, GREEDY) for i, p in enumerate(ps)])
    for i, p in enumerate(ps):
        assert done[str(i)].outputs[0].token_ids == hf_greedy(hf, p, 8)


def test_same_tokens_alone_and_in_a_batch_of_32(llama: LLMEngine) -> None:
    ps = prompts(32, 1, 60, seed=5)
    alone = [run(llama, [("a", p, GREEDY)])["a"].outputs[0].token_ids for p in ps[:8]]
    batch = run(llama, [(f"b{i}", p, GREEDY) for i, p in enumerate(ps)])
    assert [batch[f"b{i}"].outputs[0].token_ids for i in range(8)] == alone


def test_chunked_prefill_splits_a_long_prompt_and_keeps_outputs(tiny_llama: Path, hf_tiny_llama) -> None:
    eng = engine(tiny_llama, max_num_batched_tokens=16)
    long = prompts(1, 70, 70, seed=9)[0]
    short = prompts(1, 5, 5, seed=10)[0]
    eng.add_request("short", short, SamplingParams(temperature=0, max_tokens=12, ignore_eos=True))
    eng.step()
    eng.add_request("long", long, GREEDY)
    budgets, done = [], {}
    while eng.has_unfinished_requests():
        sched_before = eng.scheduler.running[:]
        for out in eng.step():
            if out.finished:
                done[out.request_id] = out
        budgets.append(len(sched_before))
    assert done["long"].outputs[0].token_ids == hf_greedy(hf_tiny_llama, long, 8)
    assert done["short"].outputs[0].token_ids == hf_greedy(hf_tiny_llama, short, 12)
    # the 70-token prompt needed ceil(70 / 15) steps of prefill while the short request kept decoding
    first = done["long"].metrics
    assert first.first_token_time > first.first_scheduled_time


def test_preemption_by_recompute_is_counted_and_outputs_stay_correct(tiny_llama: Path, caplog) -> None:
    ps = prompts(6, 10, 14, seed=11)
    sp = SamplingParams(temperature=0, max_tokens=24, ignore_eos=True)
    ref = run(engine(tiny_llama), [(str(i), p, sp) for i, p in enumerate(ps)])
    eng = engine(tiny_llama, num_gpu_blocks=24, enable_prefix_caching=False)  # 96 slots for ~220 tokens
    with caplog.at_level("INFO", logger="aisd.engine.scheduler"):
        got = run(eng, [(str(i), p, sp) for i, p in enumerate(ps)])
    assert eng.get_stats().num_preemptions > 0
    assert any("preempted" in r.message for r in caplog.records)
    for i in range(6):
        assert got[str(i)].outputs[0].token_ids == ref[str(i)].outputs[0].token_ids
    assert eng.block_manager.num_free_blocks == 24


def test_priority_scheduling_runs_the_urgent_request_first(tiny_llama: Path) -> None:
    eng = engine(tiny_llama, scheduling="priority", max_num_seqs=1)
    sp = SamplingParams(temperature=0, max_tokens=4, ignore_eos=True)
    eng.add_request("low", [1, 2, 3], sp, priority=5)
    eng.add_request("high", [4, 5, 6], sp, priority=-1)
    order = []
    while eng.has_unfinished_requests():
        order += [o.request_id for o in eng.step() if o.finished]
    assert order == ["high", "low"]


def test_abort_frees_blocks_and_reports_abort(llama: LLMEngine) -> None:
    llama.add_request("x", list(range(30)), SamplingParams(temperature=0, max_tokens=50, ignore_eos=True))
    llama.step()
    llama.step()
    assert llama.block_manager.num_free_blocks < llama.block_manager.num_blocks
    llama.abort_request("x")
    llama.abort_request("unknown-id")  # no-op
    outs = llama.step()
    assert [o.outputs[0].finish_reason for o in outs if o.request_id == "x"] == ["abort"]
    assert llama.block_manager.num_free_blocks == llama.block_manager.num_blocks
    assert not llama.has_unfinished_requests()


def test_n_greater_than_one_shares_the_prompt_and_samples_independently(llama: LLMEngine) -> None:
    p = prompts(1, 18, 18, seed=2)[0]
    sp = SamplingParams(n=3, temperature=1.0, seed=42, max_tokens=10, ignore_eos=True)
    a = run(llama, [("n", p, sp)])["n"]
    assert [o.index for o in a.outputs] == [0, 1, 2]
    assert len({tuple(o.token_ids) for o in a.outputs}) > 1
    b = run(llama, [("n", p, sp)])["n"]
    assert [o.token_ids for o in a.outputs] == [o.token_ids for o in b.outputs]
    g = run(llama, [("g", p, SamplingParams(n=3, temperature=0, max_tokens=10, ignore_eos=True))])["g"]
    alone = run(llama, [("g1", p, SamplingParams(temperature=0, max_tokens=10, ignore_eos=True))])["g1"]
    assert all(o.token_ids == alone.outputs[0].token_ids for o in g.outputs)
    assert llama.block_manager.num_free_blocks == llama.block_manager.num_blocks


def test_prefix_cache_hits_and_outputs_equal(tiny_llama: Path) -> None:
    shared = prompts(1, 40, 40, seed=4)[0]
    ps = [shared + [7, 8, 9], shared + [1, 2]]
    cold = run(engine(tiny_llama, enable_prefix_caching=False), [(str(i), p, GREEDY) for i, p in enumerate(ps)])
    eng = engine(tiny_llama)
    first = run(eng, [("0", ps[0], GREEDY)])["0"]
    second = run(eng, [("1", ps[1], GREEDY)])["1"]
    assert first.num_cached_tokens == 0 and second.num_cached_tokens == 40
    stats = eng.get_stats()
    assert stats.prefix_cache_hits == 40 and stats.prefix_cache_queries == 43 + 42
    assert first.outputs[0].token_ids == cold["0"].outputs[0].token_ids
    assert second.outputs[0].token_ids == cold["1"].outputs[0].token_ids


def test_reset_prefix_cache_forgets_cached_prompts_but_not_while_requests_run(tiny_llama: Path) -> None:
    prompt = prompts(1, 40, 40, seed=5)[0]
    eng = engine(tiny_llama)
    first = run(eng, [("a", prompt, GREEDY)])["a"]
    eng.add_request("b", prompt, GREEDY)
    eng.step()  # "b" now holds blocks: the cache cannot be dropped under it
    assert eng.reset_prefix_cache() is False
    assert run(eng, [])["b"].num_cached_tokens == 36  # the reset changed nothing: b hit 9 cached blocks
    assert eng.reset_prefix_cache() is True
    again = run(eng, [("c", prompt, GREEDY)])["c"]
    assert again.num_cached_tokens == 0  # computed from scratch, same tokens
    assert again.outputs[0].token_ids == first.outputs[0].token_ids
    eng.block_manager.check_invariants([])


def test_stop_strings_are_trimmed_and_stop_token_ids_end_generation(llama: LLMEngine) -> None:
    p = prompts(1, 12, 12, seed=6)[0]
    base = run(llama, [("s", p, SamplingParams(temperature=0, max_tokens=16, ignore_eos=True))])["s"].outputs[0]
    text = base.text
    cut = next(i for i in range(3, len(text)) if text[i:i + 2].strip() and text.find(text[i:i + 2]) == i)
    stop = text[cut:cut + 2]
    out = run(llama, [("s", p, SamplingParams(temperature=0, max_tokens=16, ignore_eos=True, stop=[stop]))])["s"]
    o = out.outputs[0]
    assert o.finish_reason == "stop" and o.stop_reason == stop and o.text == text[:cut]
    tid = base.token_ids[4]
    o = run(llama, [("t", p, SamplingParams(temperature=0, max_tokens=16, ignore_eos=True,
                                            stop_token_ids=[tid]))])["t"].outputs[0]
    first = base.token_ids.index(tid)
    assert o.token_ids == base.token_ids[:first + 1] and o.stop_reason == tid
    o = run(llama, [("l", p, SamplingParams(temperature=0, max_tokens=5, ignore_eos=True))])["l"].outputs[0]
    assert o.finish_reason == "length" and len(o.token_ids) == 5


def test_logprobs_equal_log_softmax_of_transformers_logits(llama: LLMEngine, hf_tiny_llama) -> None:
    p = prompts(1, 9, 9, seed=8)[0]
    o = run(llama, [("lp", p, SamplingParams(temperature=0, max_tokens=4, ignore_eos=True, logprobs=3))])["lp"]
    toks = o.outputs[0].token_ids
    with torch.inference_mode():
        logits = hf_tiny_llama(torch.tensor([p + toks])).logits[0, len(p) - 1:-1]
    ref = torch.log_softmax(logits, -1)
    for step, (tok, entry) in enumerate(zip(toks, o.outputs[0].logprobs, strict=True)):
        assert entry[tok].rank == 1
        assert entry[tok].logprob == pytest.approx(float(ref[step, tok]), abs=1e-4)
        assert sorted(entry) == sorted(ref[step].topk(3).indices.tolist())
    assert o.outputs[0].cumulative_logprob == pytest.approx(sum(e[t].logprob for t, e in zip(toks, o.outputs[0].logprobs, strict=True)))


def test_seeded_sampling_is_the_same_alone_and_in_a_batch(llama: LLMEngine) -> None:
    p = prompts(1, 10, 10, seed=12)[0]
    sp = SamplingParams(temperature=0.9, top_p=0.9, top_k=50, seed=3, max_tokens=12, ignore_eos=True)
    alone = run(llama, [("s", p, sp)])["s"].outputs[0].token_ids
    others = [(f"o{i}", q, SamplingParams(temperature=1.0, max_tokens=12)) for i, q in enumerate(prompts(7, seed=13))]
    batch = run(llama, [("s", p, sp), *others])["s"].outputs[0].token_ids
    assert alone == batch


def test_chat_and_text_prompts(tiny_llama: Path) -> None:
    llm = LLM(str(tiny_llama), num_gpu_blocks=64, block_size=4)
    out = llm.chat([{"role": "user", "content": "hi"}], SamplingParams(temperature=0, max_tokens=3, ignore_eos=True))
    assert out[0].prompt == "<user>hi\n<assistant>" and len(out[0].outputs[0].token_ids) == 3
    out = llm.generate("hello", SamplingParams(temperature=0, max_tokens=2, ignore_eos=True), use_tqdm=True)
    assert out[0].prompt_token_ids == list(b"hello")


def test_bad_requests_raise_invalid_request_naming_the_field(llama: LLMEngine) -> None:
    with pytest.raises(InvalidRequestError) as e:
        llama.add_request("e1", [], GREEDY)
    assert e.value.param == "prompt"
    with pytest.raises(InvalidRequestError) as e:
        llama.add_request("e2", [1] * llama.max_model_len, GREEDY)
    assert e.value.param == "prompt"
    with pytest.raises(InvalidRequestError) as e:
        llama.add_request("e3", [100000], GREEDY)
    assert e.value.param == "prompt"
    llama.add_request("dup", [1, 2], GREEDY)
    with pytest.raises(InvalidRequestError) as e:
        llama.add_request("dup", [1, 2], GREEDY)
    assert e.value.param == "request_id"
    llama.abort_request("dup")
    llama.step()
    with pytest.raises(ValueError, match="scheduling"):
        EngineConfig(scheduling="lifo")


def test_stats_track_tokens_and_usage(tiny_llama: Path) -> None:
    eng = engine(tiny_llama)
    eng.add_request("a", list(range(20)), SamplingParams(temperature=0, max_tokens=5, ignore_eos=True))
    eng.step()
    s = eng.get_stats()
    assert s.num_running == 1 and s.kv_cache_usage > 0 and s.prompt_tokens_total == 20
    while eng.has_unfinished_requests():
        eng.step()
    s = eng.get_stats()
    assert s.generation_tokens_total == 5 and s.num_running == 0 and s.kv_cache_usage == 0.0
