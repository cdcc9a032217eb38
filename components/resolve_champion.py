"""resolve_champion: find the live bundle (MLflow alias ``champion``) so it is re-evaluated in this run."""

from typing import NamedTuple

from components import cpu_step

VERSION = "2.0.0"


@cpu_step
def resolve_champion_op(
    mlflow_tracking_uri: str,
    registered_model_name: str,
    allow_bootstrap: bool,
    audit_log: str,
    prompt: str,
    gate_config: str,
    evaluator_config: str,
) -> NamedTuple("ChampionOutputs", [("has_champion", bool), ("champion_version", str), ("champion_model_source", str), ("champion_prompt", str)]):
    """resolve_champion v2.0.0: check the prompt and the policy against the evaluator config; then the champion bundle's version, weights source and prompt, or has_champion=False when nothing was ever promoted; any registry error fails the step."""
    from collections import namedtuple

    from evaluators.config import load_evaluator_config
    from evaluators.policy import check_against, load_policy
    from prompts import load_prompt
    from serving.registry import resolve_champion

    # Checked first, before any weights are fetched (the weight steps run after this one): a policy typo or
    # a prompt that reads the answer key must not cost a GPU hour.
    if prompt:
        load_prompt(prompt)
    check_against(load_policy(gate_config), load_evaluator_config(evaluator_config).metric_catalog(), gate_config)

    outputs = namedtuple("ChampionOutputs", ["has_champion", "champion_version", "champion_model_source", "champion_prompt"])
    champion = resolve_champion(mlflow_tracking_uri, registered_model_name, allow_bootstrap=allow_bootstrap, audit_log=audit_log)
    if champion is None:
        print("resolve_champion: no champion yet; the gate applies the bootstrap rule (absolute floors only)")
        return outputs(False, "", "", "")
    print(f"resolve_champion: champion is version {champion.version} ({champion.prompt}, weights {champion.model_source})")
    return outputs(True, champion.version, champion.model_source, champion.prompt)
