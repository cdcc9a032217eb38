"""``python -m pipelines.cli``: the same as the ``champion`` script."""

from pipelines.cli import app

app()
