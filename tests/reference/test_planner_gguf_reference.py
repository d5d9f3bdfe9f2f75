"""Reference check: the planner's fast GGUF header reader agrees with the ``gguf`` package's GGUFReader.

Slow: GGUFReader builds a numpy view per vocabulary entry (1-12 s for the bundled 49k-token file).
"""

from __future__ import annotations

import math

import pytest

from aisd.core.errors import ModelNotFoundError
from aisd.planner.gguf_header import ArrayInfo, read_gguf_header

gguf = pytest.importorskip("gguf")


@pytest.mark.slow
def test_header_reader_matches_gguf_reader() -> None:
    from aisd.assets import resolve

    try:
        path = resolve("smollm2-135m-instruct")
    except ModelNotFoundError as e:
        pytest.fail(f"bundled GGUF not installed (make test installs it): {e}")
    mine = read_gguf_header(path)
    ref = gguf.GGUFReader(str(path), "r")
    ref_keys = [k for k in ref.fields if not k.startswith("GGUF.")]
    assert list(mine.metadata) == ref_keys
    for key in ref_keys:
        field = ref.fields[key]
        ours = mine.metadata[key]
        if isinstance(ours, ArrayInfo):
            assert ours.length == len(field.data), key
        else:
            theirs = field.contents()
            if isinstance(theirs, float):
                assert ours == pytest.approx(theirs), key
            else:
                assert ours == theirs, key
    assert [(t.name, t.shape, t.ggml_type) for t in mine.tensors] == [
        (t.name, tuple(int(d) for d in t.shape), int(t.tensor_type)) for t in ref.tensors]
    assert sum(math.prod(t.shape) for t in mine.tensors) == 134_515_008
