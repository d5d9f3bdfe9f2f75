"""Scheduler without a model: priority preemption (vLLM's ``_schedule_priority_preemption``), decodes-first
ordering with chunked prefill, and block bookkeeping after each step. The engine-level test at the end checks that a
preempted request recomputes to the same greedy tokens."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from aisd.engine import EngineConfig, LLMEngine, SamplingParams
from aisd.engine.block_manager import BlockManager
from aisd.engine.scheduler import Scheduler, SchedulerOutput
from aisd.engine.sequence import Request, Sequence, SequenceStatus

torch.set_num_threads(1)


def make_scheduler(policy: str = "priority", num_blocks: int = 64, max_num_seqs: int = 8, budget: int = 64,
                   block_size: int = 4) -> Scheduler:
    cfg = EngineConfig(scheduling=policy, max_num_seqs=max_num_seqs, max_num_batched_tokens=budget,
                       block_size=block_size, enable_prefix_caching=False)
    return Scheduler(cfg, BlockManager(num_blocks, block_size, enable_prefix_caching=False), max_model_len=1024)


_order = iter(range(1, 10**6))


def make_seq(rid: str, n_prompt: int, priority: int = 0, t: float | None = None) -> Sequence:
    order = next(_order)
    req = Request(rid, None, list(range(1, n_prompt + 1)), SamplingParams(max_tokens=100), priority,
                  float(order) if t is None else t, order)
    seq = Sequence(req, req.prompt_token_ids)
    req.seqs.append(seq)
    return seq


def step(s: Scheduler) -> SchedulerOutput:
    """Schedule, then do what the engine does after the forward pass: advance computed tokens, append a token."""
    out = s.schedule()
    for item in out.scheduled:
        samples = item.samples
        item.seq.num_computed_tokens += item.num_new_tokens
        if samples:
            item.seq.token_ids.append(7)
    s.block_manager.check_invariants(s.running)
    return out


def ids(out: SchedulerOutput) -> list[str]:
    return [i.seq.request.request_id for i in out.scheduled]


def test_a_higher_priority_arrival_preempts_the_lowest_priority_runner_when_slots_are_full(caplog) -> None:
    s = make_scheduler(max_num_seqs=2)
    a, b = make_seq("a", 6, priority=5), make_seq("b", 6, priority=3)
    s.add(a)
    s.add(b)
    step(s)
    step(s)
    assert {x.request.request_id for x in s.running} == {"a", "b"}
    urgent = make_seq("urgent", 5, priority=0)
    s.add(urgent)
    with caplog.at_level(logging.INFO, logger="aisd.engine.scheduler"):
        out = step(s)
    assert [x.request.request_id for x in out.preempted] == ["a"]  # priority 5 is the least urgent
    assert "urgent" in ids(out) and "b" in ids(out) and "a" not in ids(out)
    assert a.status == SequenceStatus.PREEMPTED and a.num_computed_tokens == 0 and a.block_table == []
    assert a.num_tokens == 8  # prompt + the 2 generated tokens are kept: they are recomputed on resume
    assert s.num_preemptions == 1 and a.num_preemptions == 1
    assert any("preempted request a" in r.message and "sequence slot" in r.message for r in caplog.records)
    # the victim resumes once a slot frees up, recomputing prompt and output together
    s.finish(urgent)
    out = step(s)
    assert "a" in ids(out) and next(i for i in out.scheduled if i.seq is a).num_new_tokens == 8


def test_a_higher_priority_arrival_preempts_when_kv_blocks_run_out() -> None:
    s = make_scheduler(num_blocks=10, max_num_seqs=8)
    low = make_seq("low", 30, priority=2)  # 8 of 10 blocks
    s.add(low)
    step(s)
    high = make_seq("high", 12, priority=1)  # needs 3 blocks, 2 are free
    s.add(high)
    out = step(s)
    assert [x.request.request_id for x in out.preempted] == ["low"]
    assert ids(out) == ["high"]
    assert s.block_manager.num_free_blocks == 10 - 3
    while s.running:
        s.finish(s.running[0])
    assert s.block_manager.num_free_blocks == 10


def test_equal_or_lower_priority_arrivals_wait_instead_of_preempting() -> None:
    s = make_scheduler(max_num_seqs=1)
    first = make_seq("first", 4, priority=1)
    s.add(first)
    step(s)
    s.add(make_seq("same", 4, priority=1))  # same priority, later arrival: less urgent
    s.add(make_seq("lower", 4, priority=9))
    for _ in range(3):
        out = step(s)
        assert out.preempted == [] and ids(out) == ["first"]
    assert s.num_preemptions == 0


def test_no_preemption_when_the_urgent_request_fits() -> None:
    s = make_scheduler(max_num_seqs=4)
    s.add(make_seq("low", 8, priority=5))
    step(s)
    s.add(make_seq("high", 8, priority=0))
    out = step(s)
    assert out.preempted == [] and sorted(ids(out)) == ["high", "low"]


def test_fcfs_never_preempts_for_an_arrival() -> None:
    s = make_scheduler(policy="fcfs", max_num_seqs=1)
    s.add(make_seq("old", 4, priority=5))
    step(s)
    s.add(make_seq("new", 4, priority=0))  # priority is ignored under FCFS
    out = step(s)
    assert out.preempted == [] and ids(out) == ["old"]


def test_the_victim_order_is_priority_then_arrival() -> None:
    s = make_scheduler(max_num_seqs=3)
    runners = [make_seq("p2-early", 4, 2, t=1.0), make_seq("p2-late", 4, 2, t=2.0), make_seq("p1", 4, 1, t=3.0)]
    for r in runners:
        s.add(r)
    step(s)
    s.add(make_seq("p0-a", 4, 0, t=4.0))
    s.add(make_seq("p0-b", 4, 0, t=5.0))
    out = step(s)
    assert [x.request.request_id for x in out.preempted] == ["p2-late", "p2-early"]
    assert sorted(ids(out)) == ["p0-a", "p0-b", "p1"]


def test_decodes_are_scheduled_before_a_running_chunked_prefill() -> None:
    s = make_scheduler(policy="fcfs", budget=16, max_num_seqs=8)
    shorts = [make_seq(f"s{i}", 3) for i in range(3)]
    for x in shorts:
        s.add(x)
    step(s)
    long = make_seq("long", 100)
    s.add(long)
    out = step(s)  # three decodes, then the long prompt's first chunk fills the rest of the budget
    assert ids(out) == ["s0", "s1", "s2", "long"] and out.scheduled[3].num_new_tokens == 13
    # even when the prompt in progress is listed first (e.g. admitted before the others), decodes go first and
    # the prompt gets what is left: no stream waits a step behind a chunk
    s.running.remove(long)
    s.running.insert(0, long)
    out = step(s)
    assert ids(out) == ["s0", "s1", "s2", "long"] and all(i.num_new_tokens == 1 for i in out.scheduled[:3])
    assert out.scheduled[3].num_new_tokens == 13 and out.num_batched_tokens == 16


@pytest.fixture(scope="module")
def prio_engine(tiny_llama: Path) -> LLMEngine:
    return LLMEngine.from_config(EngineConfig(model=str(tiny_llama), num_gpu_blocks=64, block_size=4,
                                              scheduling="priority", max_num_seqs=1))


def test_engine_preempted_request_recomputes_to_the_same_tokens(prio_engine: LLMEngine, caplog) -> None:
    sp = SamplingParams(temperature=0, max_tokens=12, ignore_eos=True)
    low_prompt, high_prompt = list(range(40, 60)), list(range(90, 97))

    def alone(rid: str, prompt: list[int]) -> list[int]:
        prio_engine.add_request(rid, prompt, sp)
        done = {}
        while prio_engine.has_unfinished_requests():
            done.update({o.request_id: o for o in prio_engine.step() if o.finished})
        return done[rid].outputs[0].token_ids

    ref_low, ref_high = alone("ref-low", low_prompt), alone("ref-high", high_prompt)
    before = prio_engine.get_stats().num_preemptions
    prio_engine.add_request("low", low_prompt, sp, priority=10)
    for _ in range(4):
        prio_engine.step()
    prio_engine.add_request("high", high_prompt, sp, priority=0)
    order, done = [], {}
    with caplog.at_level(logging.INFO, logger="aisd.engine.scheduler"):
        while prio_engine.has_unfinished_requests():
            for o in prio_engine.step():
                if o.finished:
                    order.append(o.request_id)
                    done[o.request_id] = o
    assert order == ["high", "low"]
    assert prio_engine.get_stats().num_preemptions == before + 1
    assert any("preempted request low" in r.message for r in caplog.records)
    assert done["low"].outputs[0].token_ids == ref_low
    assert done["high"].outputs[0].token_ids == ref_high
    assert prio_engine.block_manager.num_free_blocks == prio_engine.block_manager.num_blocks
