"""Helpers for the artifacts steps write, without importing KFP (they take any object with ``path`` and ``metadata``)."""

import json
import os


def persist_metadata(*artifacts) -> None:
    """Write each artifact's metadata into its file when the step wrote none (a Metrics artifact).

    KFP keeps metrics as metadata only, but kfp.local's step cache treats an artifact without a file as
    lost and never reuses the step; the file is also what a reader of the run folder finds."""
    for artifact in artifacts:
        if not os.path.exists(artifact.path):
            os.makedirs(os.path.dirname(artifact.path), exist_ok=True)
            with open(artifact.path, "w", encoding="utf-8") as handle:
                json.dump(artifact.metadata, handle, sort_keys=True, indent=2)


def nothing_deployed(report, status: str, heading: str, reason: str, then: str = "") -> str:
    """For a run that deploys nothing (skip_deploy, look_again): write its Markdown ``report`` and return its
    ``deployment`` output, the deploy step's record with nothing rendered and the alias unmoved."""
    with open(report.path, "w", encoding="utf-8") as handle:
        handle.write(
            f"# Deployment: {heading}\n\nNothing was rendered or deployed, and the champion alias did not move: "
            f"{reason}.{then}\n"
        )
    record = {
        "status": status,
        "promoted": False,
        "reason": reason,
        "target": "",
        "manifest": None,
        "report": report.uri,
    }
    return json.dumps(record, sort_keys=True)
