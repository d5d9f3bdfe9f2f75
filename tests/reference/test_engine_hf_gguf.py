"""The engine against transformers on the bundled SmolLM2-135M-Instruct GGUF: greedy tokens equal token for token for
20 prompts of varied length, logprobs equal HF's log-softmax, and the same tokens alone and inside a batch of 32."""

from __future__ import annotations

import pytest
import torch

from aisd.engine import LLM, SamplingParams

pytestmark = pytest.mark.timeout(3600)  # a loaded shared machine can be 20x slower than a quiet one

MODEL = "smollm2-135m-instruct"
NEW_TOKENS = 16

TOPICS = ["the French Revolution", "photosynthesis", "binary search", "the water cycle", "black holes",
          "the Python GIL", "vaccines", "compound interest", "plate tectonics", "TCP handshakes"]
SENTENCE = ("A paged KV cache stores keys and values in fixed-size blocks so that memory is allocated on demand "
            "and shared between requests. ")


def make_prompts(tok) -> list[str]:
    chats = [tok.apply_chat_template([{"role": "user", "content": f"Explain {t} in two sentences."}])
             for t in TOPICS]
    raw = [SENTENCE * k + f"In short, {t} is" for k, t in zip([0, 1, 2, 3, 5, 7, 9, 11, 13, 15], TOPICS, strict=True)]
    return chats + raw


@pytest.fixture(scope="module")
def models():
    from aisd import assets

    try:
        path = assets.resolve(MODEL)
    except Exception as e:  # noqa: BLE001
        pytest.fail(f"bundled model not installed (make test installs it): {e}")
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(2)
    hf = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32).eval()
    llm = LLM(MODEL, num_gpu_blocks=1024, max_num_seqs=32)
    return hf, llm


def test_greedy_tokens_equal_transformers_for_20_prompts(models) -> None:
    """Teacher-forced check: one transformers forward over prompt + our 16 tokens must put its argmax on each of our
    tokens. By induction this is exactly "transformers' greedy decoding produces the same tokens", at the cost of
    one forward pass per prompt instead of 16 decode steps."""
    hf, llm = models
    prompts = make_prompts(llm.tokenizer)
    ids = [llm.tokenizer.encode(p) for p in prompts]
    assert len(set(map(len, ids))) >= 12 and max(map(len, ids)) > 250  # varied lengths (7 to ~300 tokens)
    outs = llm.generate(ids, SamplingParams(temperature=0, max_tokens=NEW_TOKENS, ignore_eos=True, logprobs=1))
    mismatches = []
    for i, (p, o) in enumerate(zip(ids, outs, strict=True)):
        toks = o.outputs[0].token_ids
        assert len(toks) == NEW_TOKENS
        with torch.inference_mode():
            logits = hf(torch.tensor([p + toks])).logits[0, len(p) - 1:-1].float()  # [16, vocab]
        ref = logits.argmax(-1).tolist()
        for j, (t, r) in enumerate(zip(toks, ref, strict=True)):
            if t != r:
                gap = float(logits[j, r] - logits[j, t])
                mismatches.append(f"prompt {i} ({len(p)} tokens) step {j}: ours {t}, transformers {r}, "
                                  f"logit gap {gap:.2e}")
                break
        if i == 0:  # logprobs equal log_softmax of transformers' logits
            ref_lp = torch.log_softmax(logits, -1)
            got = [entry[t].logprob for t, entry in zip(toks, o.outputs[0].logprobs, strict=True)]
            assert got == pytest.approx([float(ref_lp[j, t]) for j, t in enumerate(toks)], abs=2e-3)
    assert not mismatches, "greedy mismatches vs transformers:\n" + "\n".join(mismatches)


def test_transformers_generate_agrees_on_three_prompts(models) -> None:
    """The same through transformers' own generate() loop (KV cache and all), on a short, a medium, a long prompt."""
    hf, llm = models
    ids = [llm.tokenizer.encode(p) for p in make_prompts(llm.tokenizer)]
    picked = [ids[10], ids[3], ids[19]]
    outs = llm.generate(picked, SamplingParams(temperature=0, max_tokens=8, ignore_eos=True))
    for p, o in zip(picked, outs, strict=True):
        with torch.inference_mode():
            t = torch.tensor([p])
            ref = hf.generate(t, attention_mask=torch.ones_like(t), max_new_tokens=8, do_sample=False,
                              min_new_tokens=8, pad_token_id=hf.config.eos_token_id)[0, len(p):].tolist()
        assert o.outputs[0].token_ids == ref


def test_same_greedy_tokens_alone_and_in_a_batch_of_32(models) -> None:
    _, llm = models
    tok = llm.tokenizer
    prompts = make_prompts(tok) + [SENTENCE * (k % 6) + f"Question {k}: what is {k} plus {k}?" for k in range(12)]
    assert len(prompts) == 32
    sp = SamplingParams(temperature=0, max_tokens=NEW_TOKENS, ignore_eos=True)
    batch = llm.generate(prompts, sp)
    probe = [0, 7, 13, 19, 25, 31]
    alone = [llm.generate([prompts[i]], sp)[0] for i in probe]
    diffs = [i for i, a in zip(probe, alone, strict=True) if a.outputs[0].token_ids != batch[i].outputs[0].token_ids]
    assert not diffs, f"batch-dependent greedy tokens for prompts {diffs}"
