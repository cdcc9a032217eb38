"""champion: evaluation-gated promotion of LLM model+prompt bundles on Kubeflow Pipelines.

This package is the floor every other package stands on: typed errors, the bundle record, parameters,
data and weights loading, pins, digests, caches, tracing. It imports nothing above it (the floors are
listed, and enforced, in pyproject.toml's import-linter contract). Importing it has no side effects.
"""

__version__ = "0.1.0"
