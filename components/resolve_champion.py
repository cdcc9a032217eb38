"""resolve_champion: which bundle is live (the registry's champion alias), read once per run."""

from typing import NamedTuple

from components import Step, cpu_step

STEP = Step(title="Resolve the champion", version="3.0.0", cacheable=False)


@cpu_step
def resolve_champion_op(
    mlflow_tracking_uri: str,
    registered_model_name: str,
    allow_bootstrap: bool,
    audit_log: str,
) -> NamedTuple(
    "ChampionOutputs",
    [
        ("has_champion", bool),
        ("champion_version", str),
        ("champion_model_source", str),
        ("champion_model_pin", str),
        ("champion_model_digest", str),
        ("champion_prompt", str),
    ],
):
    """resolve_champion v3.0.0: the champion bundle's version, weights source (pinned like any model source), the model digest it was registered with, and prompt (as content), or has_champion=False when nothing was ever promoted; any registry error fails the step."""
    from champion.step_process import begin_step

    begin_step()
    from collections import namedtuple

    from champion.weights import pin_model
    from prompts import load_prompt
    from registry.registry import resolve_champion

    names = [
        "has_champion",
        "champion_version",
        "champion_model_source",
        "champion_model_pin",
        "champion_model_digest",
        "champion_prompt",
    ]
    outputs = namedtuple("ChampionOutputs", names)
    champion = resolve_champion(
        mlflow_tracking_uri, registered_model_name, allow_bootstrap=allow_bootstrap, audit_log=audit_log
    )
    if champion is None:
        return outputs(False, "", "", "", "", "")
    # Pinned as any source is, so scoring the champion is the same cached work as scoring that bundle as a
    # challenger; the gate checks that what was scored carries the registered model digest.
    # Its prompt travels as content, as pin_inputs hands on the challenger's.
    prompt = load_prompt(champion.prompt).model_dump_json()
    return outputs(
        True,
        champion.version,
        champion.model_source,
        pin_model(champion.model_source),
        champion.bundle["model_digest"],
        prompt,
    )
