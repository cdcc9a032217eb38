import pytest

from champion.errors import PromptError
from prompts import list_prompts, load_prompt
from tests.conftest import champion_cli

VALID = """
name: custom
version: 3
variables: [question]
messages:
  - role: user
    content: "Q: {{ question }}"
decoding: {max_tokens: 8}
"""


def test_packaged_prompts_load_by_name_version_and_path():
    assert {"qa-concise", "qa-oneline"} <= set(list_prompts())
    latest = load_prompt("qa-concise")
    assert load_prompt("qa-concise@1") == latest
    assert latest.ref.name == "qa-concise" and latest.ref.version == 1
    assert latest.decoding.temperature == 0.0


def test_render_fills_variables_in_a_sandbox(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(VALID)
    prompt = load_prompt(str(path))
    assert prompt.render(question="2+2?") == [{"role": "user", "content": "Q: 2+2?"}]
    with pytest.raises(PromptError, match=r"needs variables \['question'\]"):
        prompt.render()


def test_digest_tracks_content_not_description(tmp_path):
    a, b, c = tmp_path / "a.yaml", tmp_path / "b.yaml", tmp_path / "c.yaml"
    a.write_text(VALID)
    b.write_text(VALID + "description: only the description differs\n")
    c.write_text(VALID.replace("Q:", "Question:"))
    assert load_prompt(str(a)).digest == load_prompt(str(b)).digest != load_prompt(str(c)).digest


@pytest.mark.parametrize(
    "body, message",
    [
        (VALID.replace("{{ question }}", "{{ questoin }}"), "undeclared variables \\['questoin'\\]"),
        (VALID.replace("{{ question }}", "{{ question "), "Jinja2 syntax error"),
        (VALID.replace("decoding: {max_tokens: 8}", "decoding: {max_tokens: 8, temprature: 0}"), "temprature"),
        (VALID.replace("version: 3", "version: zero"), "version"),
        (VALID.replace("role: user", "role: tool"), "role"),
        (VALID + "extra_key: 1\n", "extra_key"),
    ],
)
def test_malformed_templates_are_rejected_with_the_field_named(tmp_path, body, message):
    path = tmp_path / "p.yaml"
    path.write_text(body)
    with pytest.raises(PromptError, match=message):
        load_prompt(str(path))


def test_sandbox_blocks_dunder_access(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(VALID.replace("{{ question }}", "{{ question.__class__.__mro__ }}"))
    with pytest.raises(PromptError, match="unsafe operation"):
        load_prompt(str(path)).render(question="x")


def test_unknown_name_and_version_suggest_what_exists():
    with pytest.raises(PromptError, match="qa-concise"):
        load_prompt("qa-concize")
    with pytest.raises(PromptError, match=r"available versions: \[1\]"):
        load_prompt("qa-concise@9")


def test_invalid_yaml(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("name: [unclosed\n")
    with pytest.raises(PromptError, match="not valid YAML"):
        load_prompt(str(path))


HOSTILE_TEMPLATES = {
    "recursion": ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }} {{ question }}", "recurses without end"),
    "huge loop": ("{% for i in range(10**9) %}x{% endfor %} {{ question }}", "loops more than"),
    "nested loops": (
        "{% for i in range(1000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}{{ question }}",
        "loops more than",
    ),
    "huge string": ("{{ 'x' * 10**9 }} {{ question }}", "would build more than"),
    "huge output": ("{% for i in range(90000) %}xxxxx{% endfor %}{{ question }}", "renders to more than"),
}


def _hostile_prompt(folder, body: str):
    import yaml

    (folder / "hostile").mkdir(parents=True, exist_ok=True)
    path = folder / "hostile" / "v1.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "hostile",
                "version": 1,
                "variables": ["question"],
                "messages": [{"role": "user", "content": body}],
                "decoding": {"temperature": 0.0, "top_p": 1.0, "max_tokens": 8, "seed": 0},
            }
        )
    )
    return path


@pytest.mark.parametrize("body, reason", HOSTILE_TEMPLATES.values(), ids=HOSTILE_TEMPLATES.keys())
def test_templates_that_would_exhaust_memory_or_cpu_are_refused_at_load(body, reason, tmp_path):
    with pytest.raises(PromptError, match=reason):
        load_prompt(str(_hostile_prompt(tmp_path, body)))


@pytest.mark.parametrize("body, reason", HOSTILE_TEMPLATES.values(), ids=HOSTILE_TEMPLATES.keys())
def test_champion_lint_reports_a_hostile_template_without_a_traceback(body, reason, tmp_path):

    _hostile_prompt(tmp_path, body)
    done = champion_cli("lint", "--prompts-dir", str(tmp_path))
    assert done.returncode == 1 and reason in done.stdout + done.stderr
    assert "Traceback" not in done.stderr
