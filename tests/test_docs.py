"""The documentation cannot drift: its blocks run or parse against the real CLI, its generated pages list what
the code has, and its screenshots are retaken from a real run.

Every shell, Python and YAML block of *Get started*, the how-tos and the API page carries a marker on the line
before it:

- ``<!-- test: run -->``: executed, in order, in a copy of the checkout (``test_get_started_runs_as_written``
  and ``test_the_api_page_example_runs``);
- ``<!-- test: make -->``: ``make`` targets, dry-run here; ``make run``'s own command is executed;
- ``<!-- test: parse -->``: needs a cluster, a registry or your own files: every ``champion`` command in it
  must exist with every option it uses, every ``make`` target must exist, YAML must load.
"""

from __future__ import annotations

import html
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
MARKED_PAGES = [DOCS / "get-started.md", *sorted((DOCS / "how-to").glob("*.md")), DOCS / "reference" / "api.md"]
CHECKED_LANGUAGES = {"bash", "sh", "python", "yaml"}
FENCE = re.compile(r"(?:^<!-- test: (?P<marker>\w+) -->\n)?^```(?P<lang>\w*)[^\n]*\n(?P<body>.*?)^```$", re.M | re.S)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOTS = DOCS / "assets"


def blocks(page: Path) -> list[tuple[str | None, str, str]]:
    """(marker, language, body) of every fenced block of a page, in order."""
    return [(m["marker"], m["lang"], m["body"]) for m in FENCE.finditer(page.read_text(encoding="utf-8"))]


def commands(body: str) -> list[list[str]]:
    """A shell block's commands as argument lists: continuations joined, comments dropped."""
    found = []
    for line in body.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):  # VAR=value before a command
            words = words[1:]
        if words:
            found.append(words)
    return found


def test_every_block_a_reader_might_run_says_how_it_is_tested():
    unmarked = [
        f"{page.relative_to(REPO)}: a {lang} block starting {body.splitlines()[0][:50]!r}"
        for page in MARKED_PAGES
        for marker, lang, body in blocks(page)
        if lang in CHECKED_LANGUAGES and marker not in {"run", "make", "parse"}
    ]
    assert not unmarked, "add <!-- test: run|make|parse --> on the line before:\n" + "\n".join(unmarked)


def _champion_command(words: list[str]) -> tuple[Any, list[str]]:
    """The command a line calls (``champion policy check …`` is the subcommand) and the words after its name."""
    from pipelines.cli import commands

    titles = dict(commands())
    for length in (2, 1):
        title = " ".join(words[1 : 1 + length])
        if title in titles:
            return titles[title], words[1 + length :]
    raise AssertionError(f"`champion {' '.join(words[1:3])}` is not a command (see champion --help)")


def _check_champion_line(words: list[str]) -> None:
    command, rest = _champion_command(words)
    options = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)} | {"--help"}
    for word in rest:
        if word.startswith("--"):
            assert word.split("=")[0] in options, f"`{shlex.join(words)}`: {command.name} has no option {word}"


MAKE_TARGETS = set(re.findall(r"^([a-z][a-z-]*):", (REPO / "Makefile").read_text(), re.M))
OTHER_TOOLS = {"kubectl", "docker", "curl", "export", "./compile.sh", "sed", "cp", "cat", "helm"}


@pytest.mark.parametrize(
    "page", [p for p in MARKED_PAGES if any(m in {"parse", "make"} for m, _, _ in blocks(p))], ids=lambda p: p.name
)
def test_blocks_that_need_a_cluster_parse_against_the_real_cli(page):
    for marker, lang, body in blocks(page):
        if marker not in {"parse", "make"}:
            continue
        if lang == "yaml":
            included = re.fullmatch(r'--8<-- "([^"]+)"\n', body)  # a snippet: the file it includes
            assert yaml.safe_load((REPO / included[1]).read_text() if included else body) is not None
            continue
        for words in commands(body):
            tool = Path(words[0]).name if words[0].endswith("champion") else words[0]
            if tool == "champion":
                _check_champion_line(words)
            elif tool == "make":
                assert set(words[1:]) <= MAKE_TARGETS, f"`{shlex.join(words)}`: no such make target"
            else:
                assert tool in OTHER_TOOLS, (
                    f"{page.name}: `{shlex.join(words)}` uses {tool}, which this test does not know"
                )


def test_the_api_page_example_runs(tmp_path):
    [(_, _, code)] = [b for b in blocks(DOCS / "reference" / "api.md") if b[0] == "run"]
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("failed"), done.stdout  # the example's challenger is worse, and says so


def test_how_to_blocks_that_can_run_here_run(tmp_path):
    checkout = _copy_of_the_checkout(tmp_path / "champion")
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    ran = 0
    for page in sorted((DOCS / "how-to").glob("*.md")):
        for marker, _, body in blocks(page):
            if marker == "run":
                done = subprocess.run(
                    ["bash", "-euo", "pipefail", "-c", body], cwd=checkout, env=env, capture_output=True, text=True
                )
                assert done.returncode == 0, f"{page.name}:\n{body}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
                ran += 1
    assert ran >= 4
    assert (checkout / "k8s" / "rbac.yaml").exists() and (checkout / "dist" / "pipelines" / "promotion.yaml").exists()


# --- Get started, as a reader runs it, in a copy of this checkout ---------------------------------------------


def _copy_of_the_checkout(target: Path) -> Path:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, (item.decode() for item in listed)):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    (target / ".venv").symlink_to(REPO / ".venv")
    return target


def _render(page: Path, png: Path, width: int, height: int, profile: Path) -> None:
    subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars"]
        + ["--disable-background-networking", "--disable-component-update", "--disable-sync"]
        + [f"--user-data-dir={profile}", f"--window-size={width},{height}", f"--screenshot={png}", page.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )


def _terminal_page(text: str, path: Path) -> tuple[int, int]:
    columns = 118  # 13px monospace in a 980px window: long lines wrap, and the height counts the wrapped rows
    rows = sum(max(1, -(-len(line) // columns)) for line in text.rstrip().splitlines())
    path.write_text(
        "<!doctype html><meta charset=utf-8><body style='margin:0;background:#1e1e1e'>"
        "<pre style='margin:0;padding:12px;color:#e8e8e8;font:13px/17px monospace;white-space:pre-wrap'>"
        f"{html.escape(text.rstrip())}</pre>",
        encoding="utf-8",
    )
    return 980, rows * 17 + 24


def _forest_page(report: Path, path: Path) -> tuple[int, int]:
    svg = re.search(r'<svg[^>]*id="forest".*?</svg>', report.read_text(encoding="utf-8"), re.S)
    assert svg, f"{report} has no forest plot"
    width, height = (int(re.search(rf'{key}="(\d+)"', svg[0])[1]) for key in ("width", "height"))
    path.write_text(f"<!doctype html><body style='margin:0;background:#fff'>{svg[0]}", encoding="utf-8")
    return width, height


def _assert_screenshot_current(fresh: Path, name: str) -> None:
    """The picture in the docs shows what the product shows now: same size (the same rows and lines) and nearly
    the same pixels (numbers and times may differ). CHAMPION_UPDATE_SCREENSHOTS=1 writes the fresh ones."""
    from PIL import Image, ImageChops, ImageStat

    committed = SCREENSHOTS / name
    if os.environ.get("CHAMPION_UPDATE_SCREENSHOTS") == "1":
        shutil.copyfile(fresh, committed)
    hint = f"docs/{committed.relative_to(DOCS)} is stale: retake it with `make screenshots` (fresh one: {fresh})"
    assert committed.exists(), hint
    old, new = Image.open(committed).convert("L"), Image.open(fresh).convert("L")
    assert old.size == new.size, hint
    assert ImageStat.Stat(ImageChops.difference(old, new)).mean[0] < 6.0, hint


@pytest.mark.skipif(
    CHROMIUM is None,
    reason="Debian's chromium is not installed (.ci/run installs it; locally: apt-get install chromium)",
)
def test_get_started_runs_as_written(tmp_path, shared_cache, weights_cache):
    checkout = _copy_of_the_checkout(tmp_path / "champion")
    env = {**os.environ, "PYTHONPATH": str(checkout), "CHAMPION_CACHE_DIR": str(shared_cache), "COLUMNS": "110"}
    env.pop("FORCE_COLOR", None)
    page = blocks(DOCS / "get-started.md")

    [(_, _, make_block)] = [b for b in page if b[0] == "make"]
    targets = [words[1] for words in commands(make_block)]
    assert targets == ["run", "test"]
    for target in targets:  # both targets exist and their recipes expand
        subprocess.run(["make", "-n", target], cwd=REPO, capture_output=True, check=True, timeout=60)
    quiet = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}  # under `make test`
    make_run = subprocess.run(
        ["make", "--no-print-directory", "-n", "run"],
        cwd=checkout,
        env=quiet,
        capture_output=True,
        text=True,
        check=True,
    )
    first_run = make_run.stdout.strip().splitlines()[-1]  # what `make run` runs once set up
    assert first_run == ".venv/bin/champion run"

    outputs = []
    for script in [first_run] + [body for marker, _, body in page if marker == "run"]:
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script], cwd=checkout, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, f"{script}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        outputs.append(done.stdout)

    assert "PROMOTED" in outputs[0]
    assert (checkout / "prompts" / "qa-concise" / "v2.yaml").exists()
    assert "qa-concise@2" in (checkout / "prompts" / "prompts.lock").read_text()
    import json

    decisions = sorted((checkout / ".champion" / "reports").glob("*/decision.json"), key=lambda p: p.stat().st_mtime)
    assert len(decisions) == 2
    second = json.loads(decisions[-1].read_text())
    assert second["mode"] == "paired" and second["bundle"]["prompt"]["version"] == 2  # compared with the champion
    # What the page says the reader will see: not promoted, because one comparison cannot tell.
    assert second["decision"] == "rejected"
    assert any(c["status"] == "inconclusive" for c in second["checks"] if c["test"] == "non-inferiority")

    profile = tmp_path / "chromium"
    summary = outputs[0].replace(str(checkout), "~/champion")  # the reader's clone, not this test's folder
    table = summary.index("┌")
    summary = summary[summary.rfind("\n", 0, table - 1) + 1 :]  # from the summary's title line on
    for name, (width, height), source in (
        ("terminal-summary.png", _terminal_page(summary, tmp_path / "summary.html"), tmp_path / "summary.html"),
        (
            "forest-plot.png",
            _forest_page(decisions[-1].with_name("gate_report.html"), tmp_path / "forest.html"),
            tmp_path / "forest.html",
        ),
    ):
        _render(source, tmp_path / name, width, height, profile)
        _assert_screenshot_current(tmp_path / name, name)


# --- The site: built strictly, its reference pages generated from the code ----------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(target)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return target


def _text(page: Path) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", page.read_text(encoding="utf-8")))


def test_the_step_table_is_the_step_registry(site):
    from components import registry

    rows = dict(
        re.findall(
            r"<td><code>(\w+)</code></td>\s*<td>(yes|never)</td>", (site / "concepts/pipeline/index.html").read_text()
        )
    )
    assert rows == {name: "yes" if r.step.cacheable else "never" for name, r in registry().items()}


def test_every_parameter_command_option_and_policy_field_is_in_the_reference(site):
    from champion.parameters import PromotionParameters, ScheduledEvalParameters
    from evaluators.config import EvaluatorConfig, JudgeConfig, Reliability
    from evaluators.guards import GuardConfig
    from evaluators.policy import GatePolicy, MetricRule, SliceRule
    from pipelines.cli import commands

    parameters = _text(site / "reference/parameters/index.html")
    for model in (PromotionParameters, ScheduledEvalParameters):
        assert all(name in parameters for name in model.model_fields)
    cli = _text(site / "reference/cli/index.html")
    titles = dict(commands())
    assert {"run", "plan", "policy check", "labels export"} <= set(titles)  # groups' subcommands are walked too
    for title, command in titles.items():
        assert f"champion {title}" in cli
        for param in command.params:
            assert all(opt in cli for opt in param.opts if opt.startswith("--")), (title, param.opts)
    for page, models in (
        ("policy", (GatePolicy, MetricRule, SliceRule)),
        ("evaluator-config", (EvaluatorConfig, JudgeConfig, Reliability, GuardConfig)),
    ):
        text = _text(site / f"reference/{page}/index.html")
        for model in models:
            assert model.__name__ in text
            assert all(f.description for f in model.model_fields.values()), (
                f"{model.__name__}: a field has no description"
            )


def test_the_policy_shown_is_the_policy_file(site):
    gate = _text(site / "concepts/gate/index.html")
    for line in (REPO / "evaluators/policies/default.yaml").read_text(encoding="utf-8").splitlines():
        assert line.strip() in gate, f"the gate page does not show the policy file's line {line!r}"


def test_the_readme_fits_on_two_screens_and_starts_with_the_two_commands():
    readme = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(readme) <= 150
    first_block = readme[readme.index("```bash") + 1 : readme.index("```", readme.index("```bash") + 1)]
    assert [line.split()[:2] for line in first_block] == [["make", "run"], ["make", "test"]]
