"""Load, validate and render prompt templates.

Templates render in a Jinja2 sandbox with undefined variables as errors, so a typo in a variable
name fails before any GPU time is spent instead of silently producing an empty prompt.
"""

from __future__ import annotations

import contextvars
import re
from functools import cached_property
from pathlib import Path
from typing import ClassVar, Literal

import jinja2
import yaml
from jinja2 import meta
from jinja2.sandbox import ImmutableSandboxedEnvironment
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from champion.bundle import PromptRef
from champion.config import load_yaml
from champion.digests import sha256_json
from champion.errors import PromptError, field_problems
from champion.inputs import read_text

PROMPTS_DIR = Path(__file__).resolve().parent
JUDGES_DIR = PROMPTS_DIR / "judges"
_VERSION_FILE = re.compile(r"^v(\d+)\.ya?ml$")

# A template is code run on every request: besides the sandbox's rules it gets bounded work. A prompt that
# renders more than MAX_RENDERED characters, loops more than MAX_ITERATIONS times, or builds a huge string in one
# expression is refused (at load, by the trial render, and at every render) instead of exhausting memory or CPU.
MAX_RENDERED = 200_000  # characters per message: far beyond any model's context
MAX_ITERATIONS = 100_000  # range() elements per render, across nested loops
_range_budget: contextvars.ContextVar[int] = contextvars.ContextVar("range_budget", default=MAX_ITERATIONS)


class _BoundedSandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context, operator, left, right):
        if operator == "**" and isinstance(right, (int, float)) and abs(right) > 64:
            raise jinja2.exceptions.SecurityError(f"an exponent of {right} is refused (at most 64)")
        if operator == "*":
            for sequence, count in ((left, right), (right, left)):
                if isinstance(sequence, (str, list, tuple)) and isinstance(count, int):
                    if len(sequence) * count > MAX_RENDERED:
                        raise jinja2.exceptions.SecurityError(
                            f"repeating a value {count} times would build more than {MAX_RENDERED} characters"
                        )
        return super().call_binop(context, operator, left, right)


def _bounded_range(*args: int) -> range:
    values = range(*args)
    left = _range_budget.get()
    if len(values) > left:
        raise jinja2.exceptions.SecurityError(f"the template loops more than {MAX_ITERATIONS} times in one render")
    _range_budget.set(left - len(values))
    return values


_SANDBOX = _BoundedSandbox(undefined=jinja2.StrictUndefined, autoescape=False)
_SANDBOX.globals["range"] = _bounded_range


def _render_bounded(source: str, values: dict[str, str]) -> str:
    """Render one message within the bounds; errors beyond Jinja2's own (recursion, overflow) become SecurityError."""
    token = _range_budget.set(MAX_ITERATIONS)
    try:
        parts, size = [], 0
        for chunk in _SANDBOX.from_string(source).generate(**values):
            size += len(chunk)
            if size > MAX_RENDERED:
                raise jinja2.exceptions.SecurityError(f"the message renders to more than {MAX_RENDERED} characters")
            parts.append(chunk)
        return "".join(parts)
    except RecursionError as exc:
        raise jinja2.exceptions.SecurityError("the template recurses without end (a macro calling itself)") from exc
    except (OverflowError, MemoryError) as exc:
        raise jinja2.exceptions.SecurityError(f"the template asks for too much: {exc}") from exc
    finally:
        _range_budget.reset(token)


LOCK_NAME = "prompts.lock"

# What a served bundle receives from its clients (serving/transformer.py maps the user's message onto
# these). A prompt that reads anything else, above all the evaluation's ``reference`` (the answer key),
# would be scored on information it never has in production.
SERVED_VARIABLES = ("question", "context")


class Decoding(BaseModel):
    """Decoding parameters, with OpenAI-compatible names. Every field is explicit and recorded."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: float = Field(0.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_tokens: int = Field(64, ge=1, le=8192)
    seed: int = 0
    stop: tuple[str, ...] = ()


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Literal["system", "user", "assistant"]
    content: str


class PromptTemplate(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    served_variables: ClassVar[tuple[str, ...] | None] = SERVED_VARIABLES  # None: any (judge rubrics)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    version: int = Field(ge=1)
    description: str = ""
    variables: tuple[str, ...]
    messages: tuple[Message, ...] = Field(min_length=1)
    decoding: Decoding = Decoding()

    @field_validator("messages")
    @classmethod
    def _ends_with_user_turn(cls, messages: tuple[Message, ...]) -> tuple[Message, ...]:
        if messages[-1].role != "user":
            raise ValueError("the last message must have role 'user' (the model answers it)")
        return messages

    @model_validator(mode="after")
    def _declared_variables_match_template(self) -> "PromptTemplate":
        used: set[str] = set()
        for message in self.messages:
            try:
                used |= meta.find_undeclared_variables(_SANDBOX.parse(message.content))
            except jinja2.TemplateSyntaxError as exc:
                raise ValueError(
                    f"Jinja2 syntax error in a {message.role} message, line {exc.lineno}: {exc.message}"
                ) from exc
        declared = set(self.variables)
        allowed = type(self).served_variables
        if allowed is not None and declared - set(allowed):
            unavailable = sorted(declared - set(allowed))
            key = " (the evaluation's answer key)" if "reference" in unavailable else ""
            raise ValueError(
                f"the prompt uses {unavailable}{key}, which a served bundle never receives: clients send only {list(allowed)}; "
                "a prompt that reads it would be evaluated on information it will not have in production"
            )
        if used - declared:
            raise ValueError(f"template uses undeclared variables {sorted(used - declared)}; add them to 'variables'")
        if declared - used:
            raise ValueError(f"declared variables {sorted(declared - used)} are not used by any message")
        # A template can parse and still fail whatever the input (``{{ 0.__class__ }}``, ``{{ 0.a }}``): a trial
        # render refuses it here, at load, instead of at the first served request.
        for message in self.messages:
            try:
                _render_bounded(message.content, {name: "x" for name in declared})
            except jinja2.exceptions.SecurityError as exc:
                raise ValueError(
                    f"a {message.role} message tried an unsafe operation ({exc}); templates may only use variables and filters"
                ) from exc
            except jinja2.TemplateError as exc:
                raise ValueError(f"a {message.role} message fails to render with placeholder values: {exc}") from exc
        return self

    @cached_property
    def digest(self) -> str:
        """Digest of everything that changes what the model sees or how it decodes."""
        return sha256_json(self.model_dump(mode="json", exclude={"description"}))

    @property
    def ref(self) -> PromptRef:
        return PromptRef(name=self.name, version=self.version, digest=self.digest)

    def render(self, **values: str) -> list[dict[str, str]]:
        """Render to chat messages. Unknown or missing variables are errors."""
        missing = set(self.variables) - set(values)
        if missing:
            raise PromptError(
                f"prompt {self.name} v{self.version} needs variables {sorted(missing)}.",
                "pass them, or declare fewer variables in the template.",
            )
        rendered = []
        for message in self.messages:
            try:
                content = _render_bounded(message.content, values)
            except jinja2.exceptions.SecurityError as exc:
                raise PromptError(
                    f"prompt {self.name} v{self.version} tried an unsafe operation: {exc}.",
                    "templates may only use variables and filters, not Python attributes, with bounded loops and output.",
                ) from exc
            except jinja2.UndefinedError as exc:
                raise PromptError(
                    f"prompt {self.name} v{self.version}: {exc}.", "fix the variable name in the template."
                ) from exc
            rendered.append({"role": message.role, "content": content})
        return rendered


class JudgeRubric(PromptTemplate):
    """A judge prompt: the verdict is one of ``labels`` on the line starting with ``verdict_prefix``."""

    served_variables: ClassVar[tuple[str, ...] | None] = None  # a judge reads the answer and the reference by design

    kind: Literal["pointwise", "pairwise"]
    labels: tuple[str, ...] = Field(min_length=2)
    verdict_prefix: str = Field(min_length=1)

    @model_validator(mode="after")
    def _variables_fit_the_kind(self) -> "JudgeRubric":
        needed = {"pointwise": {"question", "answer"}, "pairwise": {"question", "answer_a", "answer_b"}}[self.kind]
        if not needed <= set(self.variables):
            raise ValueError(f"a {self.kind} rubric must use variables {sorted(needed)}")
        return self


def _parse(path: Path, model: type[PromptTemplate] = PromptTemplate, root: Path = PROMPTS_DIR) -> PromptTemplate:

    try:
        data = load_yaml(read_text(path, "prompt file", error=PromptError))
    except yaml.YAMLError as exc:
        raise PromptError(f"{path} is not valid YAML: {exc}", "fix the YAML syntax.") from exc
    if not isinstance(data, dict):
        raise PromptError(
            f"{path} must hold a mapping with name, version, variables, messages.", "see prompts/qa-concise/v1.yaml."
        )
    try:
        template = model.model_validate(data)
    except ValidationError as exc:
        problems = field_problems(exc, whole="file")
        raise PromptError(f"{path} is not a valid prompt template: {problems}.", "fix the fields named.") from exc
    match = _VERSION_FILE.match(path.name)
    if path.parent.parent == root and (
        path.parent.name != template.name or not match or int(match.group(1)) != template.version
    ):
        raise PromptError(
            f"{path} declares {template.name} v{template.version} but lives at {path.parent.name}/{path.name}.",
            f"move it to {path.parent.parent.name}/{template.name}/v{template.version}.yaml.",
        )
    return template


def list_prompts(root: Path = PROMPTS_DIR) -> dict[str, list[int]]:
    """Every packaged prompt name with its versions, oldest first."""
    found: dict[str, list[int]] = {}
    for path in sorted(root.glob("*/v*.y*ml")):
        match = _VERSION_FILE.match(path.name)
        if match:
            found.setdefault(path.parent.name, []).append(int(match.group(1)))
    return {name: sorted(versions) for name, versions in sorted(found.items())}


def load_rubric(ref: str) -> JudgeRubric:
    """Load a judge rubric from prompts/judges/ by name or name@version, or by path."""
    return load_prompt(ref, root=JUDGES_DIR, model=JudgeRubric)  # type: ignore[return-value]


def published_digests(root: Path = PROMPTS_DIR) -> dict[str, str]:
    """``name@version`` (judges as ``judges/name@version``) → digest, from the lock file beside the prompts."""
    path = root / LOCK_NAME
    if not path.is_file():
        return {}

    try:
        data = load_yaml(read_text(path, "prompt lock file", error=PromptError)) or {}
    except yaml.YAMLError as exc:
        raise PromptError(f"{path} is not valid YAML: {exc}", "regenerate it with `champion lock`.") from exc
    if not isinstance(data, dict):
        raise PromptError(f"{path} is not a mapping of name@version to digest.", "regenerate it with `champion lock`.")
    return {str(k): str(v) for k, v in data.items()}


def check_identity(template: PromptTemplate, root: Path = PROMPTS_DIR, source: str = "") -> PromptTemplate:
    """A prompt's identity is its content: a template claiming a published ``name@version`` must have
    the published digest, or it is an impostor (an edit that would reuse a label that means other text)."""
    lock_root, prefix = (root.parent, "judges/") if root.name == JUDGES_DIR.name else (root, "")
    label = f"{prefix}{template.name}@{template.version}"
    published = published_digests(lock_root).get(label)
    if published is not None and published != template.digest:
        raise PromptError(
            f"{source or 'the prompt'} claims {label}, which is published with other content (digest {published[:12]}, this file {template.digest[:12]}); one label must always mean one text.",
            f"give it a new version (version: {template.version + 1}) or a new name; published prompts never change.",
        )
    return template


def load_prompt(ref: str, root: Path = PROMPTS_DIR, model: type[PromptTemplate] = PromptTemplate) -> PromptTemplate:
    """Load a prompt by path (``my/prompt.yaml``), name (``qa-concise``, latest version), ``name@version``,
    or inline as the template's JSON (how `champion trigger` sends a prompt the cluster image lacks).
    A template that claims a published name@version with other content is refused."""
    return check_identity(
        _load(ref, root, model), root, ref if not ref.lstrip().startswith("{") else "the inline prompt"
    )


def _load(ref: str, root: Path, model: type[PromptTemplate]) -> PromptTemplate:
    if ref.lstrip().startswith("{"):
        try:
            return model.model_validate_json(ref)
        except ValidationError as exc:
            problems = field_problems(exc, whole="prompt")
            raise PromptError(
                f"the inline prompt is not a valid prompt template: {problems}.",
                "pass the JSON of a prompt file (PromptTemplate.model_dump_json()).",
            ) from exc
    as_path = Path(ref)
    if as_path.suffix in {".yaml", ".yml"}:
        return _parse(as_path, model, root)
    name, _, version = ref.partition("@")
    available = list_prompts(root)
    if name not in available:
        raise PromptError(
            f"no prompt named {name!r}.",
            f"use one of {sorted(available)} or a path to a .yaml file.",
        )
    if version:
        if not version.isdigit() or int(version) not in available[name]:
            raise PromptError(f"prompt {name} has no version {version!r}.", f"available versions: {available[name]}.")
        chosen = int(version)
    else:
        chosen = available[name][-1]
    return _parse(root / name / f"v{chosen}.yaml", model, root)
