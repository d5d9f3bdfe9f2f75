"""Answerability calibration: AUC equals scipy's Mann-Whitney U, the fitted thresholds respect the false-refusal
budget and are the best such (checked against brute force), questions load from JSONL or SQuAD with clear errors, and
the whole loop runs over a real in-memory pipeline, the CLI and HTTP."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from scipy.stats import mannwhitneyu

from aisd.core.errors import CorruptDataError, InvalidRequestError, NotFoundError
from aisd.embed.fake import HashingEmbedder
from aisd.rag.answerability import AnswerabilityChecker, AnswerabilityConfig, parse_strategy
from aisd.rag.calibrate import (
    LabelledQuestion,
    auc,
    calibrate,
    checker_for,
    fit_thresholds,
    load_questions,
    refusal_rates,
)
from aisd.rag.documents import Document
from aisd.rag.pipeline import RAGPipeline


def test_auc_equals_mann_whitney_u() -> None:
    rng = np.random.default_rng(0)
    pos, neg = rng.normal(0.5, 1, 40).round(1), rng.normal(0, 1, 30).round(1)  # rounding makes ties
    u = mannwhitneyu(pos, neg, alternative="two-sided").statistic
    assert auc(pos, neg) == pytest.approx(u / (len(pos) * len(neg)), abs=1e-12)
    assert auc(pos, np.array([])) is None


@pytest.mark.parametrize("budget", [0.0, 0.1, 0.25])
def test_single_threshold_is_the_best_within_budget(budget: float) -> None:
    rng = np.random.default_rng(1)
    answerable = rng.random(200) < 0.5
    scores = np.where(answerable, rng.normal(1, 1, 200), rng.normal(0, 1, 200))[:, None]
    (t,) = fit_thresholds(scores, answerable, budget)
    unans, frr = refusal_rates(scores, [t], answerable)
    assert frr <= budget
    # no threshold among the observed scores refuses more unanswerable questions within the budget
    for cand in np.unique(scores):
        u, f = refusal_rates(scores, [cand], answerable)
        assert not (f <= budget and u > unans + 1e-12)


def test_joint_thresholds_respect_the_budget_and_beat_each_strategy_alone() -> None:
    rng = np.random.default_rng(2)
    n = 300
    answerable = rng.random(n) < 0.5
    # two signals, each catching a different half of the unanswerable questions
    kind = rng.random(n) < 0.5
    s1 = np.where(answerable | kind, rng.normal(1, 0.5, n), rng.normal(-1, 0.5, n))
    s2 = np.where(answerable | ~kind, rng.normal(1, 0.5, n), rng.normal(-1, 0.5, n))
    scores = np.stack([s1, s2], axis=1)
    t = fit_thresholds(scores, answerable, 0.1)
    both, frr = refusal_rates(scores, t, answerable)
    assert frr <= 0.1
    for j in range(2):
        alone = refusal_rates(scores[:, [j]], fit_thresholds(scores[:, [j]], answerable, 0.1), answerable)[0]
        assert both > alone + 0.2
    # the grid's best: no pair of observed answerable quantiles does better within the budget
    grid = [np.quantile(scores[answerable, j], np.linspace(0, 0.1, 11)) for j in range(2)]
    best = max(refusal_rates(scores, c, answerable)[0] for c in itertools.product(*grid)
               if refusal_rates(scores, c, answerable)[1] <= 0.1)
    assert both >= best - 1e-12


def test_fit_needs_answerable_questions() -> None:
    with pytest.raises(InvalidRequestError, match="answerable"):
        fit_thresholds(np.zeros((3, 1)), np.zeros(3, bool), 0.2)


def test_load_questions_jsonl_squad_and_errors(tmp_path: Path) -> None:
    good = tmp_path / "q.jsonl"
    good.write_text('{"question": "Who?", "answerable": true}\n\n{"question": "Why?", "answerable": false}\n')
    assert load_questions(good) == [LabelledQuestion("Who?", True), LabelledQuestion("Why?", False)]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "Who?", "answerable": "yes"}\n')
    with pytest.raises(CorruptDataError, match="line 1"):
        load_questions(bad)
    bad.write_text('{"question": "Who?"}\n')
    with pytest.raises(CorruptDataError, match="line 1"):
        load_questions(bad)
    with pytest.raises(NotFoundError):
        load_questions(tmp_path / "missing.jsonl")
    squad = tmp_path / "squad.json"
    squad.write_text(json.dumps({"data": [{"title": "T", "paragraphs": [{"context": "Paris is in France.", "qas": [
        {"id": "1", "question": "Where is Paris?", "answers": [{"text": "France", "answer_start": 12}]},
        {"id": "2", "question": "Where is Rome?", "answers": [], "is_impossible": True}]}]}]}))
    assert load_questions(squad) == [LabelledQuestion("Where is Paris?", True), LabelledQuestion("Where is Rome?", False)]


DOCS = [
    Document(id="a", text="The alpha protocol listens on port 7000. Alpha was designed by Ada Park in 1998.",
             source="t", title="Alpha"),
    Document(id="b", text="Beta servers run in Lisbon. The beta cluster has 40 nodes and uses Debian.",
             source="t", title="Beta"),
    Document(id="c", text="Gamma backups run nightly at 02:00. Gamma stores them in the Oslo data centre.",
             source="t", title="Gamma"),
]
QUESTIONS = [
    LabelledQuestion("Which port does the alpha protocol listen on?", True),
    LabelledQuestion("Who designed the alpha protocol?", True),
    LabelledQuestion("Where do the beta servers run?", True),
    LabelledQuestion("How many nodes does the beta cluster have?", True),
    LabelledQuestion("When do gamma backups run?", True),
    LabelledQuestion("Where does gamma store its backups?", True),
    LabelledQuestion("Which port did Bjorn Olsen choose for the alpha protocol in 2005?", False),
    LabelledQuestion("How many Windows nodes does the beta cluster in Madrid have?", False),
    LabelledQuestion("Who audits the gamma backups in Helsinki?", False),
    LabelledQuestion("Why did Ada Park leave the beta project in 2011?", False),
]


@pytest.fixture()
def pipeline() -> RAGPipeline:
    pipe = RAGPipeline.in_memory(embedder=HashingEmbedder(dim=256), retriever="bm25", answerability="none")
    pipe.ingest(DOCS)
    return pipe


def test_calibrate_over_a_real_pipeline(pipeline: RAGPipeline) -> None:
    checker = checker_for(pipeline, "coverage:0.9")  # a threshold in the spec is ignored: calibration sets it
    report = calibrate(lambda q: pipeline.retrieve(q), checker, QUESTIONS, max_false_refusal=0.2)
    assert report.n_answerable == 6 and report.n_unanswerable == 4
    assert report.false_refusal <= 0.2
    ((name, thr),) = [(s.name, s.threshold) for s in parse_strategy(report.spec)]
    assert name == "coverage" and thr == report.strategies[0].threshold
    assert report.strategies[0].auc is not None and report.strategies[0].auc > 0.5
    # the spec it hands back behaves as reported when used for real
    used = AnswerabilityChecker(AnswerabilityConfig(strategy=report.spec, sources=3), embedder=pipeline.embedder)
    refused = [not used.check(q.question, pipeline.retrieve(q.question)).answerable for q in QUESTIONS]
    unans = np.mean([r for r, q in zip(refused, QUESTIONS, strict=True) if not q.answerable])
    frr = np.mean([r for r, q in zip(refused, QUESTIONS, strict=True) if q.answerable])
    assert (unans, frr) == pytest.approx((report.refused_unanswerable, report.false_refusal))


def test_calibrate_refuses_bad_requests(pipeline: RAGPipeline) -> None:
    with pytest.raises(InvalidRequestError, match="must be one of"):
        checker_for(pipeline, "magic")
    with pytest.raises(InvalidRequestError, match="none"):
        calibrate(lambda q: pipeline.retrieve(q), checker_for(pipeline, "none"), QUESTIONS)
    with pytest.raises(InvalidRequestError, match="LLM"):  # llm without a client
        calibrate(lambda q: pipeline.retrieve(q), checker_for(pipeline, "llm"), QUESTIONS)
    with pytest.raises(InvalidRequestError, match="no questions"):
        calibrate(lambda q: pipeline.retrieve(q), checker_for(pipeline, "coverage"), [])


def test_calibrate_route_and_cli(pipeline: RAGPipeline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from aisd.app import wiring
    from aisd.app.cli import app as cli
    from aisd.app.server import create_app
    from aisd.app.settings import Settings
    from aisd.app.wiring import Services

    settings = Settings(home=tmp_path)
    services = Services(settings)
    services.rag = pipeline
    client = TestClient(create_app(settings, services))
    body = {"questions": [{"question": q.question, "answerable": q.answerable} for q in QUESTIONS],
            "answerability": "coverage", "max_false_refusal": 0.2}
    r = client.post("/v1/rag/calibrate", json=body)
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["object"] == "rag.calibration" and data["spec"].startswith("coverage:")
    assert data["false_refusal"] <= 0.2
    assert client.post("/v1/rag/calibrate", json={**body, "answerability": "magic"}).status_code == 400
    assert client.post("/v1/rag/calibrate", json={**body, "questions": []}).status_code == 400
    assert client.post("/v1/rag/calibrate", json={**body, "max_false_refusal": 1.5}).status_code == 400

    qfile = tmp_path / "q.jsonl"
    qfile.write_text("\n".join(json.dumps({"question": q.question, "answerable": q.answerable}) for q in QUESTIONS))
    monkeypatch.setenv("AISD_HOME", str(tmp_path / "home"))  # the CLI builds its own Services from settings
    monkeypatch.setattr(wiring.Services, "rag", property(lambda self: pipeline), raising=False)
    result = CliRunner().invoke(cli, ["rag", "calibrate", str(qfile), "--answerability", "coverage", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["spec"] == data["spec"]
