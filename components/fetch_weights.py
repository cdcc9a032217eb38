"""fetch_weights: resolve a model source to a local Hugging Face safetensors folder plus a sha256 manifest.

The work is done by ``champion.weights`` (its docstring has the details).
"""

from typing import NamedTuple

from kfp.dsl import Model, Output

from components import Step, cpu_step

STEP = Step(title="Fetch weights", version="2.0.0", cacheable=True)


@cpu_step
def fetch_weights_op(
    model_source: str,
    model_pin: str,
    weights_cache: str,
    trust_remote_code: bool,
    model: Output[Model],
) -> NamedTuple("FetchOutputs", [("model_digest", str)]):
    """fetch_weights v2.0.0: resolve a model source, checked against the run's pin, to safetensors plus a sha256 manifest."""
    from champion.step_process import begin_step

    begin_step()
    from collections import namedtuple

    from champion.pinning import check_pin
    from champion.weights import fetch_weights, pin_model

    check_pin(model_pin, pin_model(model_source), f"model source {model_source}")

    fetched = fetch_weights(
        model_source, model.path, cache_dir=weights_cache or None, trust_remote_code=trust_remote_code
    )
    model.metadata.update({"digest": fetched.digest, "source": model_source, "files": len(fetched.manifest)})
    return namedtuple("FetchOutputs", ["model_digest"])(fetched.digest)
