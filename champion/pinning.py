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
