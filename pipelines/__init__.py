"""The pipeline graphs (they only wire steps from components/) and the ``champion`` CLI."""
