"""LlamaModel.layer_observer: activation capture after every decoder layer, on the torch and the fused paths."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from aisd.engine import LLM, SamplingParams, fused_ops

PROMPT = [5, 17, 42, 9, 100, 3, 77, 12, 8]


def _capture(path: Path, dtype: str, fused: bool) -> tuple[list[list[torch.Tensor]], list[torch.Tensor], LLM]:
    """One prefill of PROMPT: the observed states per forward call, and what each forward returned."""
    llm = LLM(str(path), num_gpu_blocks=64, block_size=4, dtype=dtype, max_num_batched_tokens=64)
    model = llm.engine.model
    model.fused = None if fused else False
    calls: list[list[torch.Tensor]] = []
    returned: list[torch.Tensor] = []
    forward = model.forward

    def observer(i: int, x: torch.Tensor) -> None:
        if i == 0:
            calls.append([])
        assert i == len(calls[-1])  # layers in order, each once
        calls[-1].append(x.clone())

    def recording_forward(*args: object) -> torch.Tensor:
        out = forward(*args)
        returned.append(out.clone())
        return out

    model.layer_observer = observer
    model.forward = recording_forward  # type: ignore[method-assign]
    llm.generate([PROMPT], SamplingParams(temperature=0, max_tokens=1, logprobs=5))
    return calls, returned, llm


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("fused", [False, True])
def test_observer_sees_every_layer_and_the_last_state_is_the_forward_output(tiny_llama: Path, dtype: str,
                                                                            fused: bool) -> None:
    assert fused_ops.available(), "the fused native ops did not build (see the warning logged with the compiler error)"
    calls, returned, llm = _capture(tiny_llama, dtype, fused)
    model = llm.engine.model
    assert model.fused is fused
    assert len(calls) == len(returned) == 1  # one prefill step for a 9-token prompt
    states = calls[0]
    assert len(states) == model.config.num_layers
    assert all(s.shape == (len(PROMPT), model.config.hidden_size) and s.dtype == torch.float32 for s in states)
    assert torch.equal(states[-1], returned[0])  # bf16 mode: x + the pending MLP output, as the final add makes it
    assert not torch.equal(states[0], states[-1])


def test_observed_states_agree_between_the_fused_and_torch_paths(tiny_llama: Path) -> None:
    assert fused_ops.available(), "the fused native ops did not build (see the warning logged with the compiler error)"
    for dtype, tol in (("float32", 0.0), ("bfloat16", 0.05)):
        torch_states = _capture(tiny_llama, dtype, False)[0][0]
        fused_states = _capture(tiny_llama, dtype, True)[0][0]
        for a, b in zip(torch_states, fused_states, strict=True):
            assert (a - b).abs().max().item() <= tol * max(1.0, a.abs().max().item())


def test_last_layer_state_gives_the_engines_first_token_logprobs(tiny_qwen2: Path) -> None:
    """What a probe reads is what the sampler read: the last prompt position of the last layer's state, through the
    final norm and the LM head, reproduces the engine's top logprobs for the first generated token."""
    calls, _, llm = _capture(tiny_qwen2, "float32", False)
    model = llm.engine.model
    logits = model.compute_logits(calls[0][-1][-1:])  # [1, vocab]
    lp = torch.log_softmax(logits[0], dim=-1)
    out = llm.generate([PROMPT], SamplingParams(temperature=0, max_tokens=1, logprobs=5))[0].outputs[0]
    first = out.logprobs[0]
    assert out.token_ids[0] == int(lp.argmax())
    for token_id, entry in first.items():
        assert entry.logprob == pytest.approx(float(lp[token_id]), abs=1e-4)


def test_no_observer_by_default(tiny_llama: Path) -> None:
    llm = LLM(str(tiny_llama), num_gpu_blocks=64, block_size=4)
    assert llm.engine.model.layer_observer is None
