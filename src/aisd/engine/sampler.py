"""Sampler: logits -> next tokens, with penalties, temperature, top-k / top-p / min-p and per-request seeds.

Order (vLLM v1's Sampler): min_tokens masking -> penalties -> greedy argmax, or temperature -> min-p -> top-k / top-p
-> sample. Sampling draws q ~ Exponential(1) from the sequence's own torch.Generator and takes argmax(p / q), which
samples from p exactly (the exponential-race / Gumbel-max trick, as vLLM does) and keeps each request reproducible
whatever else is in the batch. Logprobs are reported from the raw model distribution (vLLM's default).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from aisd.engine.sequence import Sequence


@dataclass
class SampledToken:
    token_id: int
    logprob: float | None = None  # raw log-probability of the token (only when logprobs were requested)
    rank: int | None = None
    top: list[tuple[int, float]] | None = None  # the k most likely (token, logprob), best first


def apply_penalties(logits: torch.Tensor, prompt_ids: list[int], output_ids: list[int], repetition: float,
                    frequency: float, presence: float) -> torch.Tensor:
    """One row [V]. Repetition penalty over prompt + output (Keskar et al. 2019, CTRL: divide positive logits,
    multiply negative ones); frequency / presence over the output (OpenAI: l -= f * count + p * (count > 0))."""
    V = logits.shape[-1]
    if repetition != 1.0:
        seen = torch.zeros(V, dtype=torch.bool)
        ids = torch.tensor(prompt_ids + output_ids, dtype=torch.long)
        seen[ids[ids < V]] = True
        penalised = torch.where(logits > 0, logits / repetition, logits * repetition)
        logits = torch.where(seen, penalised, logits)
    if (frequency != 0 or presence != 0) and output_ids:
        out = torch.tensor(output_ids, dtype=torch.long)
        counts = torch.bincount(out[out < V], minlength=V).to(logits.dtype)
        logits = logits - frequency * counts - presence * (counts > 0).to(logits.dtype)
    return logits


def apply_min_p(logits: torch.Tensor, min_p: torch.Tensor) -> torch.Tensor:
    """[S, V]: drop tokens whose probability is below min_p x the top probability (Nguyen et al. 2024)."""
    probs = torch.softmax(logits, dim=-1)
    threshold = probs.max(dim=-1, keepdim=True).values * min_p[:, None]
    return logits.masked_fill(probs < threshold, float("-inf"))


def apply_top_k_top_p(logits: torch.Tensor, top_k: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """[S, V]: keep the top_k most likely tokens (k <= 0: all), then the smallest set with cumulative probability
    >= top_p (nucleus sampling, Holtzman et al. 2020; the most likely token always stays)."""
    V = logits.shape[-1]
    sorted_logits, idx = logits.sort(dim=-1, descending=False)  # ascending: the kept tail is at the end
    k = torch.where(top_k > 0, top_k.clamp(max=V), torch.full_like(top_k, V))
    kth = sorted_logits.gather(1, (V - k).clamp(min=0)[:, None])  # [S, 1] the k-th largest value
    mask = sorted_logits < kth
    sorted_logits = sorted_logits.masked_fill(mask, float("-inf"))
    probs = sorted_logits.softmax(dim=-1)
    cum = probs.cumsum(dim=-1)
    drop = cum <= (1 - top_p[:, None])  # mass strictly before the nucleus
    drop[:, -1] = False
    sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
    return torch.empty_like(logits).scatter_(1, idx, sorted_logits)


class Sampler:
    def __init__(self, eos_token_id: int | None) -> None:
        self.eos_token_id = eos_token_id

    def __call__(self, logits: torch.Tensor, rows: list[list[Sequence]]) -> list[list[SampledToken]]:
        """logits [S, V] float32; rows[i] = the sequences that take a token from row i (n of them for the first
        token of an n > 1 request, else one). Returns one SampledToken per sequence, in the same nesting."""
        S, V = logits.shape
        want_lp = any(seqs[0].params.logprobs is not None for seqs in rows)
        raw_lp = torch.log_softmax(logits, dim=-1) if want_lp else None
        simple = all(seqs[0].params.greedy and not seqs[0].params.has_penalties and len(seqs) == 1
                     and seqs[0].num_output_tokens >= seqs[0].params.min_tokens for seqs in rows)
        if simple:
            chosen = logits.argmax(dim=-1).tolist()
            return [[self._token(chosen[i], i, rows[i][0], raw_lp)] for i in range(S)]

        proc = logits.clone()
        for i, seqs in enumerate(rows):
            seq = seqs[0]
            p = seq.params
            if seq.num_output_tokens < p.min_tokens:
                banned = list(p.stop_token_ids or [])
                if self.eos_token_id is not None and not p.ignore_eos:
                    banned.append(self.eos_token_id)
                banned = [t for t in banned if t < V]
                if banned:
                    proc[i, banned] = float("-inf")
            if p.has_penalties:
                proc[i] = apply_penalties(proc[i], seq.token_ids[:seq.num_prompt_tokens], seq.output_token_ids,
                                          p.repetition_penalty, p.frequency_penalty, p.presence_penalty)
        out: list[list[SampledToken]] = [[] for _ in rows]
        greedy = [i for i, seqs in enumerate(rows) if seqs[0].params.greedy]
        if greedy:
            g = proc[greedy].argmax(dim=-1).tolist()
            for j, i in enumerate(greedy):
                out[i] = [self._token(g[j], i, s, raw_lp) for s in rows[i]]
        rand = [i for i, seqs in enumerate(rows) if not seqs[0].params.greedy]
        if rand:
            sub = proc[rand]
            temps = torch.tensor([rows[i][0].params.temperature for i in rand], dtype=sub.dtype)
            sub = sub / temps[:, None]
            min_p = torch.tensor([rows[i][0].params.min_p for i in rand], dtype=sub.dtype)
            if bool((min_p > 0).any()):
                sub = apply_min_p(sub, min_p)
            top_k = torch.tensor([rows[i][0].params.top_k for i in rand], dtype=torch.long)
            top_p = torch.tensor([rows[i][0].params.top_p for i in rand], dtype=sub.dtype)
            if bool((top_k > 0).any()) or bool((top_p < 1).any()):
                sub = apply_top_k_top_p(sub, top_k, top_p)
            probs = torch.softmax(sub, dim=-1)
            for j, i in enumerate(rand):
                for seq in rows[i]:
                    q = torch.empty(V).exponential_(generator=seq.generator)
                    out[i].append(self._token(int((probs[j] / q).argmax()), i, seq, raw_lp))
        return out

    @staticmethod
    def _token(token_id: int, row: int, seq: Sequence, raw_lp: torch.Tensor | None) -> SampledToken:
        k = seq.params.logprobs
        if k is None or raw_lp is None:
            return SampledToken(token_id)
        lp = raw_lp[row]
        value = float(lp[token_id])
        rank = int((lp > value).sum()) + 1
        top = None
        if k > 0:
            vals, ids = lp.topk(k)
            top = list(zip(ids.tolist(), vals.tolist(), strict=True))
        return SampledToken(token_id, value, rank, top)
