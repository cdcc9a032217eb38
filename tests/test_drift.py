"""Drift reports with the real Evidently, and the HTML rendered in headless Chromium."""

import re
import shutil
import subprocess
import tempfile

import pytest

from champion.errors import DataError, EvaluationError
from evaluators.drift import drift_report, load_reference
from evaluators.semantic import SemanticSimilarity

BASELINE = [{"id": f"q{i}", "reference": "Paris", "output": "The capital of France is Paris."} for i in range(12)]
POEMS = [
    {
        "id": f"q{i}",
        "reference": "Paris",
        "output": "The sea is a land of endless wonder, and its depths are a mirror of the sky at night.",
    }
    for i in range(12)
]


@pytest.fixture(scope="module")
def semantic():
    return SemanticSimilarity()


@pytest.fixture(scope="module")
def drifted(semantic):
    return drift_report(POEMS, BASELINE, semantic=semantic)


def test_off_topic_outputs_drift_and_same_outputs_do_not(drifted, semantic):
    assert drifted.drifted_share >= 0.75 and drifted.tests_failed >= 1
    same = drift_report(BASELINE[:6] + BASELINE[:6], BASELINE, semantic=semantic)
    assert same.drifted_share == 0.0


def test_report_is_self_contained_and_has_json(drifted):
    assert "<script src=" not in drifted.html and "https://" not in drifted.html[:20000]
    assert '"metrics"' in drifted.json


def test_sentiment_lexicon_is_found_in_the_shipped_nltk_data(drifted):
    import nltk

    assert nltk.data.find("sentiment/vader_lexicon.zip")


def test_too_few_rows_is_a_clear_error(semantic):
    with pytest.raises(EvaluationError, match="at least 2 rows"):
        drift_report(BASELINE[:1], BASELINE, semantic=semantic)


def test_reference_loading(tmp_path):
    assert len(load_reference("demo", {"no-such-id"})) == 72
    assert len(load_reference("demo", {"demo-001", "demo-002", "x"})) == 2
    bad = tmp_path / "ref.jsonl"
    bad.write_text('{"id": "a", "output": 3, "reference": "x"}\n')
    with pytest.raises(DataError, match="row 1: needs text 'output'"):
        load_reference(str(bad), set())


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--virtual-time-budget=15000",
]


@pytest.mark.skipif(
    CHROMIUM is None,
    reason="Debian's chromium is not installed (.ci/run installs it; locally: apt-get install chromium)",
)
def test_drift_report_renders_in_headless_chromium(drifted, tmp_path):
    from PIL import Image

    page = tmp_path / "drift.html"
    page.write_text(drifted.html, encoding="utf-8")
    common = [CHROMIUM, *FLAGS, f"--user-data-dir={tempfile.mkdtemp()}"]
    dom = subprocess.run([*common, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120).stdout
    # Text between tags exists only once the report's JavaScript has rendered it (in the source it sits inside JSON).
    assert re.search(r">\s*Share of Drifted Columns\s*<", dom)
    assert re.search(r">\s*similarity_to_reference\s*<", dom)
    shot = tmp_path / "drift.png"
    subprocess.run(
        [*common, "--window-size=1200,900", f"--screenshot={shot}", page.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    pixels = Image.open(shot).convert("L").getdata()
    assert sum(p < 200 for p in pixels) / len(pixels) > 0.01  # not a blank page
