"""champion: evaluation-gated promotion of LLM model+prompt bundles on Kubeflow Pipelines.

This package holds what every layer shares: the version, the typed errors and the bundle record.
The layers themselves live beside it: prompts/, serving/, evaluators/, components/, pipelines/.
"""

__version__ = "0.1.0"
