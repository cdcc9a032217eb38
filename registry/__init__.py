"""Where a run's outcome is recorded and read back: the MLflow registry (which bundle is live, and
moving that safely), registering a gated bundle, the audit log, each run's Prometheus series, and the
scheduled monitoring of the live champion (which reads the registry and never promotes).

Above ``evaluators`` (a registered decision carries the gate's intervals), below ``serving`` (a
rollout moves the champion alias only after it has succeeded).
"""
