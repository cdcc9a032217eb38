"""resolve_champion: find the live bundle (MLflow alias ``champion``) so it is re-evaluated in this run."""

from typing import NamedTuple

from components import cpu_step

VERSION = "1.0.0"


@cpu_step
def resolve_champion_op(
    mlflow_tracking_uri: str,
    registered_model_name: str,
) -> NamedTuple("ChampionOutputs", [("has_champion", bool), ("champion_version", str), ("champion_model_source", str), ("champion_prompt", str)]):
    """resolve_champion v1.0.0: the champion bundle's version, weights source and prompt, or has_champion=False."""
    from collections import namedtuple

    from serving.registry import resolve_champion

    outputs = namedtuple("ChampionOutputs", ["has_champion", "champion_version", "champion_model_source", "champion_prompt"])
    champion = resolve_champion(mlflow_tracking_uri, registered_model_name)
    if champion is None:
        print("resolve_champion: no champion yet; the gate applies the bootstrap rule (absolute floors only)")
        return outputs(False, "", "", "")
    print(f"resolve_champion: champion is version {champion.version} ({champion.prompt}, weights {champion.model_source})")
    return outputs(True, champion.version, champion.model_source, champion.prompt)
