from __future__ import annotations

import pytest

from aisd.search.tokenize import ENGLISH_STOPWORDS, Tokenizer


def test_default_analysis() -> None:
    tok = Tokenizer()
    assert tok("The Cells were RUNNING quickly; naïve café-owners' studies.") == \
        ["cell", "run", "quick", "naiv", "cafe", "owner", "studi"]


def test_options_and_config_roundtrip() -> None:
    raw = Tokenizer(stopwords="none", stemmer="none")
    assert raw("The cats, a dog") == ["the", "cats", "dog"]  # single letters are not terms
    custom = Tokenizer(stopwords=("cats",), stemmer="none")
    assert custom("the cats") == ["the"]
    assert Tokenizer.from_config(custom.config()) == custom
    assert "the" in ENGLISH_STOPWORDS


def test_validation() -> None:
    with pytest.raises(ValueError, match="english, porter, none"):
        Tokenizer(stemmer="lancaster")
    with pytest.raises(ValueError, match="stopwords"):
        Tokenizer(stopwords="french")
