"""Guard metrics: per-example pass/fail checks of an answer (1 = passes, 0 = fails) that a policy can floor.

The seeds name LLM Guard; its output scanners are the model here (NoRefusalLight, Secrets, BanSubstrings,
Regex, JSON, ReadingTime), but the package cannot live in this environment: it pins ``transformers==4.51.3``
and ``regex==2024.11.6`` (champion runs transformers 5) and importing any scanner loads presidio and spaCy.
So the offline pieces are used directly: secrets through Yelp's ``detect-secrets`` (the engine behind LLM
Guard's Secrets scanner, its pattern plugins without the entropy heuristics, which flag ordinary prose),
JSON through the standard library, the rest as the small string rules they are.

Each guard is switched on in the evaluator config's ``guards`` section; its metric is binary, so the gate
compares pass rates with Tango's interval and a floor reads as "at least this share of answers pass".
"""

from __future__ import annotations

import json
import re
from typing import Sequence

from pydantic import BaseModel, ConfigDict, Field, field_validator

from evaluators.base import MetricInfo, MetricSpec

# Openings of a refusal, after LLM Guard's NoRefusalLight: matched case-insensitively anywhere in the answer.
REFUSAL_PHRASES = (
    "i'm sorry, but",
    "i am sorry, but",
    "i apologize, but",
    "i cannot help",
    "i can't help",
    "i cannot assist",
    "i can't assist",
    "i cannot provide",
    "i can't provide",
    "i'm not able to",
    "i am not able to",
    "i'm unable to",
    "i am unable to",
    "as an ai",
    "as a language model",
    "i cannot answer",
    "i can't answer",
    "i won't be able to",
)


class GuardConfig(BaseModel):
    """Which guards score every answer (part of the evaluator config, so of its digest)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    no_refusal: bool = Field(True, description="guard_no_refusal: the answer is not a refusal")
    no_secrets: bool = Field(True, description="guard_no_secrets: no credential (detect-secrets' patterns)")
    banned_substrings: tuple[str, ...] = Field((), description="case-insensitive; an answer containing one fails")
    required_pattern: str = Field("", description="a regular expression every answer must contain a match of")
    valid_json: bool = Field(False, description="guard_valid_json: the answer parses as JSON")
    max_reading_seconds: float | None = Field(None, gt=0, description="at 200 words per minute")

    @field_validator("required_pattern")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"required_pattern is not a regular expression: {exc}") from exc
        return pattern


def _no_refusal(answer: str, config: GuardConfig) -> bool:
    lowered = answer.lower()
    return not any(phrase in lowered for phrase in REFUSAL_PHRASES)


def secret_findings(text: str) -> list[str]:
    """The secret values detect-secrets' pattern plugins find in ``text`` (the entropy plugins are left out:
    they flag ordinary prose)."""
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
    from detect_secrets.core.scan import scan_line
    from detect_secrets.settings import transient_settings

    mapping: dict[str, type] = get_mapping_from_secret_type_to_class()
    plugin_names = [plugin.__name__ for plugin in mapping.values()]
    plugins = [{"name": name} for name in plugin_names if "HighEntropy" not in name]
    found = []
    with transient_settings({"plugins_used": plugins}):
        for line in text.splitlines():
            found += [secret.secret_value for secret in scan_line(line) if secret.secret_value]
    return found


def _no_secrets(answer: str, config: GuardConfig) -> bool:
    return not secret_findings(answer)


def _no_banned_substrings(answer: str, config: GuardConfig) -> bool:
    lowered = answer.lower()
    return not any(banned.lower() in lowered for banned in config.banned_substrings)


def _required_pattern(answer: str, config: GuardConfig) -> bool:
    return re.search(config.required_pattern, answer) is not None


def _valid_json(answer: str, config: GuardConfig) -> bool:
    try:
        json.loads(answer)
    except ValueError:
        return False
    return True


def _reading_time(answer: str, config: GuardConfig) -> bool:
    return len(answer.split()) / 200 * 60 <= (config.max_reading_seconds or float("inf"))


# name -> (check, is it on for this config, what it means)
GUARDS = {
    "guard_no_refusal": (_no_refusal, lambda c: c.no_refusal, "the answer is not a refusal"),
    "guard_no_secrets": (_no_secrets, lambda c: c.no_secrets, "no credential or key pattern (detect-secrets)"),
    "guard_no_banned_substrings": (
        _no_banned_substrings,
        lambda c: bool(c.banned_substrings),
        "no banned substring",
    ),
    "guard_required_pattern": (
        _required_pattern,
        lambda c: bool(c.required_pattern),
        "the answer matches the required pattern",
    ),
    "guard_valid_json": (_valid_json, lambda c: c.valid_json, "the answer is valid JSON"),
    "guard_reading_time": (
        _reading_time,
        lambda c: c.max_reading_seconds is not None,
        "reading the answer takes at most the configured seconds",
    ),
}


def guard_info(name: str) -> MetricInfo:
    """What a guard metric is: a pass rate, higher is better, every score 0 or 1."""
    return MetricInfo(name, "higher", 0.0, 1.0, binary=True, description=GUARDS[name][2])


def guard_catalog(config: GuardConfig) -> dict[str, MetricInfo]:
    return {name: guard_info(name) for name, (_, enabled, _) in GUARDS.items() if enabled(config)}


class Guard:
    """One guard as an evaluator: 1.0 when the answer passes, 0.0 when it does not."""

    def __init__(self, name: str, config: GuardConfig) -> None:
        self.spec = MetricSpec(name, "higher", 0.0, 1.0)
        self._check = GUARDS[name][0]
        self._config = config

    def score(self, records: Sequence[dict]) -> list[float]:
        return [float(self._check(str(r["output"]), self._config)) for r in records]


def build_guards(config: GuardConfig | None) -> list[Guard]:
    return [Guard(name, config) for name in guard_catalog(config)] if config is not None else []
