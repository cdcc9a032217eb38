"""Pins: one string that names what a mutable input holds right now.

A run pins every mutable input once, at its start (the ``pin_inputs`` step). The steps that read those
inputs take the pin as a parameter and check it against what they read, so KFP's step cache, which
keys on parameters, is correct by construction: a changed file has a new pin and misses the cache;
an unchanged one hits it. What cannot be pinned (a hosted dataset without ETags) gets a pin that is
new every run: it is read again, never served stale.

    sha256:<hex>     the bytes of a local file, or the files of a local folder
    hf:<commit>      a Hugging Face repository at a commit
    etag:<hex>       a remote folder or file, from its listing's ETags/checksums and sizes
    unpinned:<uuid>  cannot be pinned: always read again
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from champion.digests import sha256_file, sha256_json
from champion.errors import ChampionError, ConfigError

_SKIP_PARTS = {".cache", ".git", "__pycache__"}


class PinMismatch(ChampionError):
    """An input changed between the start of the run and the step that reads it."""


def pin_path(path: str | Path) -> str:
    """sha256 of a file's bytes, or of a folder's relative names and file digests."""
    path = Path(path)
    if path.is_file():
        return "sha256:" + sha256_file(path)
    if path.is_dir():
        files = {
            str(p.relative_to(path)): sha256_file(p)
            for p in sorted(path.rglob("*"))
            if p.is_file() and not _SKIP_PARTS.intersection(p.relative_to(path).parts)
        }
        return "sha256:" + sha256_json(files)
    raise ConfigError(f"{path} does not exist.", "check the path.")


_CHECKSUM_KEYS = ("ETag", "etag", "md5Hash", "crc32c", "checksum", "sha256")


def pin_url(url: str) -> str:
    """The listing of a remote file or folder: names, sizes and the store's checksums (ETags). A store
    whose listing carries no checksum cannot be pinned."""
    import fsspec

    try:
        fs, root = fsspec.core.url_to_fs(url)
        listing = fs.find(root, detail=True) if fs.isdir(root) else {root: fs.info(root)}
    except (ImportError, ValueError) as exc:
        raise ConfigError(
            f"cannot open {url}: {exc}",
            "install the fsspec driver for this scheme: pip install 'champion[cloud]' (s3fs, gcsfs).",
        ) from exc
    except FileNotFoundError as exc:
        raise ConfigError(f"{url} does not exist.", "check the URL.") from exc
    entries = {}
    for name, info in sorted(listing.items()):
        checksum = next((str(info[key]) for key in _CHECKSUM_KEYS if info.get(key)), None)
        if checksum is None:  # some stores list without checksums but return them per file
            detail = fs.info(name)
            checksum = next((str(detail[key]) for key in _CHECKSUM_KEYS if detail.get(key)), None)
        if checksum is None:
            return unpinned()
        entries[name[len(root.rstrip("/")) :]] = [checksum, info.get("size")]
    return "etag:" + sha256_json(entries)


def unpinned() -> str:
    return f"unpinned:{uuid.uuid4()}"


def pin_hf_model(ref: str) -> str:
    """``hf://org/name[@rev]`` at the commit it resolves to: the local cache's ref when offline (local
    runs), the Hub's answer otherwise."""
    repo_id, _, revision = ref.removeprefix("hf://").partition("@")
    revision = revision or "main"
    if len(revision) == 40 and all(c in "0123456789abcdef" for c in revision):
        return f"hf:{revision}"
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        from huggingface_hub.constants import HF_HUB_CACHE

        ref_file = Path(HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}" / "refs" / revision
        return f"hf:{ref_file.read_text().strip()}" if ref_file.is_file() else unpinned()
    from huggingface_hub import HfApi

    try:
        return f"hf:{HfApi().model_info(repo_id, revision=revision).sha}"
    except Exception:  # the fetch step reports an unreachable or missing model with its own error
        return unpinned()


def pin_source(source: str, local_path: Path | None = None) -> str:
    """The pin of a data or model source. ``local_path``: the file a name stands for (``demo``, ``smollm2``)."""
    if local_path is not None:
        return pin_path(local_path)
    if source.startswith("hf://datasets/"):
        return unpinned()  # read from the datasets cache: cheap to read again, and it has no commit to pin
    if source.startswith("hf://"):
        return pin_hf_model(source)
    if "://" in source and not source.startswith("file://"):
        return pin_url(source)
    return pin_path(source.removeprefix("file://"))


def check_pin(expected: str, actual: str, what: str) -> None:
    """Refuse to go on when an input changed after the run pinned it (fails closed)."""
    if expected and not expected.startswith("unpinned:") and expected != actual:
        raise PinMismatch(
            f"{what} changed after this run started (pinned {expected[:23]}…, now {actual[:23]}…): the run would mix two versions of it.",
            "run again; keep inputs unchanged while a run is in progress (or write new versions to new paths).",
        )


def pin_model(source: str) -> str:
    """A model source's pin: a packaged name stands for its GGUF file."""
    from champion.weights import PACKAGED_MODELS, packaged_gguf

    return pin_source(source, packaged_gguf(source) if source in PACKAGED_MODELS else None)


def pin_data(source: str) -> str:
    from champion.data import DEMO_DATA

    return pin_source(source, DEMO_DATA if source == "demo" else None)


def pin_reference(source: str) -> str:
    from evaluators.drift import DEMO_REFERENCE

    return pin_source(source, DEMO_REFERENCE if source == "demo" else None)


def pin_judge(config) -> str:
    """What the judge is: its weights' pin, or (a hosted model, which can change behind its name) its
    endpoint and name, as the per-example verdict cache keys it; and the data its reliability is checked on."""
    from evaluators.reliability import data_digest

    if config.judge is None:
        return ""
    if config.judge.backend == "openai":
        model = "endpoint:" + sha256_json({"endpoint": config.judge.base_url, "model": config.judge.model})
    else:
        model = pin_model(config.judge.model)
    # The bias battery and the labelled set it is checked against: an edit re-runs the judge check.
    return f"{model} judge-data:{data_digest(config.judge.reliability)}"


def load_run_configs(prompt: str, evaluator_config: str, gate_config: str):
    """(prompt template or None, evaluator config, gate policy), checked: the prompt reads no answer key and
    impersonates no published version, the policy fits the evaluator config. The local runner's preflight
    and the pipeline's first step both call this."""
    from evaluators.config import load_evaluator_config
    from evaluators.policy import check_against, load_policy
    from prompts import load_prompt

    template = load_prompt(prompt) if prompt else None
    config = load_evaluator_config(evaluator_config)
    policy = load_policy(gate_config)
    check_against(policy, config.metric_catalog(), gate_config)
    return template, config, policy


@dataclass(frozen=True)
class RunPins:
    """What a run's inputs hold, fixed at its start. Small configs travel as their content (JSON)."""

    data: str
    model: str
    prompt: str  # the prompt template as JSON ("" when the champion's prompt comes from the registry)
    evaluator_config: str  # the evaluator config as JSON
    judge: str
    gate_config: str  # the gate policy as JSON
    drift_reference: str


def pin_run_inputs(
    *, data_source: str, model_source: str, prompt: str, evaluator_config: str, gate_config: str, drift_reference: str
) -> RunPins:
    """Pin every mutable input of a run and check the ones that would otherwise fail minutes later: the
    prompt (no answer-key variables, no impostor of a published version) and the policy against the
    evaluator config. ``model_source``/``prompt`` may be empty (the scheduled evaluation takes both
    from the registry)."""
    template, config, policy = load_run_configs(prompt, evaluator_config, gate_config)
    return RunPins(
        data=pin_data(data_source),
        model=pin_model(model_source) if model_source else "",
        prompt=template.model_dump_json() if template else "",
        evaluator_config=config.model_dump_json(),
        judge=pin_judge(config),
        gate_config=policy.model_dump_json(),
        drift_reference=pin_reference(drift_reference),
    )
