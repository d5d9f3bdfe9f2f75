"""``make demo``'s engine part end to end: a real ``aisd serve`` subprocess, a streamed answer, tokens/s."""

from __future__ import annotations

import pytest

from aisd.app import demo_engine

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_demo_streams_an_answer_over_http_and_stops_the_server(capsys: pytest.CaptureFixture) -> None:
    from aisd.assets import resolve
    from aisd.core.errors import ModelNotFoundError

    try:
        resolve("smollm2-135m-instruct")
    except ModelNotFoundError as e:
        pytest.fail(f"bundled model not installed (make test installs it): {e}")
    result = demo_engine.run("What is the capital of France?", max_tokens=8)
    out = capsys.readouterr().out
    assert result is not None, out
    assert 1 <= result.completion_tokens <= 8 and result.text
    assert "tokens/s" in out and result.text in out
