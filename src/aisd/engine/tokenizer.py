"""Tokenizer: a ``tokenizers`` (Rust) tokenizer built from GGUF metadata or a tokenizer.json, plus the chat template.

GGUF byte-level BPE vocabularies (``tokenizer.ggml.model == "gpt2"``) are rebuilt directly from
``tokenizer.ggml.tokens`` / ``merges`` with the pre-tokenizer the file's ``tokenizer.ggml.pre`` names (as
transformers' GGUF integration and llama.cpp's llama-vocab do); sentencepiece vocabularies go through transformers'
GGUF converter. The chat template is the model's own Jinja2 template, rendered in a sandbox the way transformers does.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from aisd.core.errors import CorruptDataError, InvalidRequestError, UnsupportedError

# Split regexes of the pre-tokenizers named by tokenizer.ggml.pre (llama.cpp llama-vocab.cpp; same as transformers).
_LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                 r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
SPLITS = {"llama3": _LLAMA3_SPLIT, "llama-v3": _LLAMA3_SPLIT, "llama-bpe": _LLAMA3_SPLIT, "smaug-bpe": _LLAMA3_SPLIT,
          "qwen2": _QWEN2_SPLIT, "deepseek-r1-qwen": _QWEN2_SPLIT}


@lru_cache(maxsize=1)
def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map (Radford et al. 2019, encoder.py)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs), strict=True))


class Tokenizer:
    """encode / decode / apply_chat_template over a ``tokenizers.Tokenizer``."""

    def __init__(self, backend: Any, *, bos_token_id: int | None, eos_token_id: int | None,
                 chat_template: str | None, add_bos_token: bool = False) -> None:
        self.backend = backend
        self.bos_token_id = bos_token_id
        self.eos_token_id = eos_token_id
        self.chat_template = chat_template
        self.add_bos_token = add_bos_token and bos_token_id is not None
        self.bos_token = backend.id_to_token(bos_token_id) if bos_token_id is not None else None
        self.eos_token = backend.id_to_token(eos_token_id) if eos_token_id is not None else None
        self.vocab_size = backend.get_vocab_size(with_added_tokens=True)
        self._template: Any = None

    # ---- construction -------------------------------------------------------------------------------------------
    @classmethod
    def from_gguf_metadata(cls, meta: dict[str, Any]) -> Tokenizer:
        kind = meta.get("tokenizer.ggml.model")
        tokens: list[str] = list(meta.get("tokenizer.ggml.tokens") or [])
        if not tokens:
            raise CorruptDataError("GGUF metadata has no tokenizer.ggml.tokens: cannot build the tokenizer")
        types = list(meta.get("tokenizer.ggml.token_type") or [1] * len(tokens))
        if kind == "gpt2":
            backend = _byte_level_bpe(tokens, list(meta.get("tokenizer.ggml.merges") or []), types,
                                      meta.get("tokenizer.ggml.pre"))
        elif kind == "llama":
            backend = _sentencepiece_via_transformers(meta)
        else:
            raise UnsupportedError(f"GGUF tokenizer type {kind!r} is not supported (supported: gpt2, llama)",
                                   param="model")
        return cls(backend, bos_token_id=meta.get("tokenizer.ggml.bos_token_id"),
                   eos_token_id=meta.get("tokenizer.ggml.eos_token_id"),
                   chat_template=meta.get("tokenizer.chat_template"),
                   add_bos_token=bool(meta.get("tokenizer.ggml.add_bos_token", kind == "llama")))

    @classmethod
    def from_pretrained_dir(cls, folder: Path, eos_token_id: int | None = None) -> Tokenizer:
        from tokenizers import Tokenizer as RustTokenizer

        folder = Path(folder)
        tj = folder / "tokenizer.json"
        if not tj.exists():
            raise CorruptDataError(f"{folder}: tokenizer.json is missing (needed to tokenize for this model)")
        backend = RustTokenizer.from_file(str(tj))
        cfg: dict[str, Any] = {}
        if (folder / "tokenizer_config.json").exists():
            cfg = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))

        def tok_id(value: Any) -> int | None:
            if isinstance(value, dict):
                value = value.get("content")
            return backend.token_to_id(value) if isinstance(value, str) else None

        template = cfg.get("chat_template")
        if (folder / "chat_template.jinja").exists():
            template = (folder / "chat_template.jinja").read_text(encoding="utf-8")
        eos = tok_id(cfg.get("eos_token"))
        return cls(backend, bos_token_id=tok_id(cfg.get("bos_token")),
                   eos_token_id=eos if eos is not None else eos_token_id, chat_template=template,
                   add_bos_token=bool(cfg.get("add_bos_token", False)))

    # ---- text <-> ids -------------------------------------------------------------------------------------------
    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        ids = self.backend.encode(text, add_special_tokens=False).ids
        if add_special_tokens and self.add_bos_token and (not ids or ids[0] != self.bos_token_id):
            ids = [self.bos_token_id, *ids]
        return ids

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return self.backend.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def id_to_token(self, token_id: int) -> str | None:
        return self.backend.id_to_token(token_id)

    # ---- chat ---------------------------------------------------------------------------------------------------
    def apply_chat_template(self, messages: list[dict[str, Any]], add_generation_prompt: bool = True,
                            **kwargs: Any) -> str:
        """Render the model's chat template (Jinja2, sandboxed, transformers' conventions)."""
        if not self.chat_template:
            raise UnsupportedError("this model has no chat template; use a completion prompt instead",
                                   param="messages")
        if not isinstance(messages, list) or not all(isinstance(m, dict) and "role" in m for m in messages):
            raise InvalidRequestError("messages must be a list of {role, content} objects", param="messages")
        if self._template is None:
            self._template = _compile_template(self.chat_template)
        return self._template.render(messages=messages, add_generation_prompt=add_generation_prompt,
                                     bos_token=self.bos_token or "", eos_token=self.eos_token or "", **kwargs)


def _compile_template(source: str) -> Any:
    from jinja2.exceptions import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise InvalidRequestError(f"chat template: {message}", param="messages")

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = lambda x, indent=None, ensure_ascii=False: json.dumps(x, indent=indent,
                                                                                  ensure_ascii=ensure_ascii)
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    try:
        return env.from_string(source)
    except TemplateError as e:
        raise CorruptDataError(f"the model's chat template does not compile: {e}") from e


def _byte_level_bpe(tokens: list[str], merges: list[str], types: list[int], pre: str | None) -> Any:
    from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers
    from tokenizers import Tokenizer as RustTokenizer

    alphabet = set(_bytes_to_unicode().values())
    spelling = _bytes_to_unicode()
    vocab = {(t if set(t) <= alphabet else "".join(spelling[b] for b in t.encode("utf-8"))): i
             for i, t in enumerate(tokens)}
    pairs = [tuple(m.split(" ", 1)) for m in merges]
    tok = RustTokenizer(models.BPE(vocab=vocab, merges=pairs, fuse_unk=False, byte_fallback=False))
    if pre in SPLITS:
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(SPLITS[pre]), behavior="isolated"),
                                                     pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    elif pre == "smollm":  # SmolLM's own tokenizer.json: single digits, then GPT-2 byte-level splitting
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                     pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    else:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    # token_type 3 = control (special, e.g. <|im_end|>), 4 = user-defined: both must match whole in text
    special = [AddedToken(t, special=True, normalized=False) for t, ty in zip(tokens, types, strict=False)
               if ty == 3 and set(t) <= alphabet]
    user = [AddedToken(t, special=False, normalized=False) for t, ty in zip(tokens, types, strict=False) if ty == 4]
    if special:
        tok.add_special_tokens(special)
    if user:
        tok.add_tokens(user)
    return tok


def _sentencepiece_via_transformers(meta: dict[str, Any]) -> Any:
    from transformers.integrations.gguf.gguf_tokenizer_mapping import GGUF_TOKENIZER_MAPPING, convert_gguf_tokenizer

    tdict = {name: meta[f"tokenizer.{key}"] for key, name in GGUF_TOKENIZER_MAPPING["tokenizer"].items()
             if f"tokenizer.{key}" in meta}
    backend, _ = convert_gguf_tokenizer(meta.get("general.architecture", "llama"), tdict)
    return backend
