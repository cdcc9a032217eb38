import json
import os
import shutil

import pytest

from champion.errors import ModelSourceError
from champion.weights import MANIFEST_NAME, fetch_weights, verify_weights


def test_packaged_smollm2_converts_once_and_is_content_addressed(smollm2, weights_cache, tmp_path):
    assert (smollm2.path / "model.safetensors").is_file()
    assert {"config.json", "tokenizer.json", "model.safetensors"} <= set(smollm2.manifest)
    assert verify_weights(smollm2.path) == smollm2.digest
    again = fetch_weights("smollm2", tmp_path / "again", cache_dir=weights_cache)
    assert again.digest == smollm2.digest
    # the cached conversion is hard-linked, not copied: a second run costs no disk
    assert os.stat(again.path / "model.safetensors").st_ino == os.stat(smollm2.path / "model.safetensors").st_ino


@pytest.fixture
def small_folder(smollm2, tmp_path):
    """A copy of the real model's small files with a tiny stand-in weights file (the checks read names, not tensors)."""
    folder = tmp_path / "model"
    folder.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(smollm2.path / name, folder / name)
    (folder / "model.safetensors").write_bytes(b"not-really-weights")
    return folder


def test_local_folder_gets_a_manifest_and_digest(small_folder, tmp_path):
    fetched = fetch_weights(str(small_folder), tmp_path / "out")
    manifest = json.loads((fetched.path / MANIFEST_NAME).read_text())["files"]
    assert set(manifest) == {"config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors"}
    (small_folder / "model.safetensors").write_bytes(b"changed")
    assert fetch_weights(str(small_folder), tmp_path / "out2").digest != fetched.digest


def test_pickle_only_weights_are_refused(small_folder, tmp_path):
    (small_folder / "model.safetensors").unlink()
    (small_folder / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(ModelSourceError, match="pickle") as info:
        fetch_weights(str(small_folder), tmp_path / "out")
    assert "safe_serialization" in info.value.fix


def test_pickles_beside_safetensors_are_not_copied(small_folder, tmp_path):
    (small_folder / "pytorch_model.bin").write_bytes(b"pickle")
    fetched = fetch_weights(str(small_folder), tmp_path / "out")
    assert not (fetched.path / "pytorch_model.bin").exists()


def test_remote_code_is_off_unless_asked(small_folder, tmp_path):
    config = json.loads((small_folder / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.Model"}
    (small_folder / "config.json").write_text(json.dumps(config))
    (small_folder / "modeling_evil.py").write_text("import os\n")
    with pytest.raises(ModelSourceError, match="remote code is off"):
        fetch_weights(str(small_folder), tmp_path / "out")
    fetched = fetch_weights(str(small_folder), tmp_path / "out", trust_remote_code=True)
    assert (fetched.path / "modeling_evil.py").is_file()


def test_verify_detects_tampering(small_folder, tmp_path):
    fetched = fetch_weights(str(small_folder), tmp_path / "out")
    (fetched.path / "config.json").unlink()
    (fetched.path / "config.json").write_text("{}")
    with pytest.raises(ModelSourceError, match="does not match its manifest"):
        verify_weights(fetched.path)


def test_fsspec_url_is_downloaded(small_folder, tmp_path):
    import fsspec

    memory = fsspec.filesystem("memory")
    for path in small_folder.iterdir():
        memory.pipe(f"/models/tiny/{path.name}", path.read_bytes())
    fetched = fetch_weights("memory://models/tiny", tmp_path / "out", cache_dir=tmp_path / "cache")
    assert fetched.digest == fetch_weights(str(small_folder), tmp_path / "local").digest
    # An in-memory store lists no checksums, so it cannot be pinned: its download is used once and not kept.
    fetch_weights("memory://models/tiny", tmp_path / "again", cache_dir=tmp_path / "cache")
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.startswith((".download-", "download-"))]


def test_a_store_with_etags_is_downloaded_once_per_content(small_folder, tmp_path):
    """A store that lists checksums, as S3 lists ETags: one kept copy per content, reused while unchanged,
    a new one (and a new pin) when a file changes."""
    import hashlib

    import fsspec
    from fsspec.implementations.memory import MemoryFileSystem

    from champion.pinning import pin_url

    class ETagStore(MemoryFileSystem):
        protocol = "etagstore"

        @classmethod
        def _strip_protocol(cls, path):
            return super()._strip_protocol(path.replace("etagstore://", "memory://", 1))

        def _with_etag(self, info):
            if info["type"] == "file":
                info = {**info, "ETag": hashlib.md5(self.cat_file(info["name"])).hexdigest()}
            return info

        def info(self, path, **kwargs):
            return self._with_etag(super().info(path, **kwargs))

        def ls(self, path, detail=True, **kwargs):
            listing = super().ls(path, detail=detail, **kwargs)
            return [self._with_etag(entry) for entry in listing] if detail else listing

    fsspec.register_implementation("etagstore", ETagStore, clobber=True)
    store = fsspec.filesystem("etagstore")
    for path in small_folder.iterdir():
        store.pipe(f"/models/etag/{path.name}", path.read_bytes())
    url = "etagstore://models/etag"
    pin = pin_url(url)
    assert pin.startswith("etag:") and pin_url(url) == pin
    first = fetch_weights(url, tmp_path / "one", cache_dir=tmp_path / "cache")
    second = fetch_weights(url, tmp_path / "two", cache_dir=tmp_path / "cache")
    kept = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert first.digest == second.digest and len(kept) == 1 and kept[0].startswith("download-")
    store.pipe("/models/etag/tokenizer_config.json", b'{"changed": true}')
    assert pin_url(url) != pin
    third = fetch_weights(url, tmp_path / "three", cache_dir=tmp_path / "cache")
    assert third.digest != first.digest and len([p for p in (tmp_path / "cache").iterdir()]) == 2


@pytest.mark.parametrize(
    "source, message",
    [
        ("no/such/folder", "not a packaged model"),
        ("missing.gguf", "does not exist"),
        ("hf://champion-tests/not-cached", "not in the local Hugging Face cache"),
    ],
)
def test_unresolvable_sources(source, message, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(ModelSourceError, match=message):
        fetch_weights(source, tmp_path / "out", cache_dir=tmp_path / "cache")


def test_unsupported_file_and_folder_without_config(tmp_path):
    (tmp_path / "weights.onnx").write_bytes(b"x")
    with pytest.raises(ModelSourceError, match="unsupported format"):
        fetch_weights(str(tmp_path / "weights.onnx"), tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelSourceError, match="no config.json"):
        fetch_weights(str(tmp_path / "empty"), tmp_path / "out")


def test_a_cache_under_a_dot_cache_folder_works_and_the_models_own_dot_cache_is_skipped(small_folder, tmp_path):
    """The default weights cache is ~/.cache/champion/weights: a `.cache` folder in the path above the model must
    not hide its files; only a `.cache/` inside the model folder (a Hugging Face download's) is skipped."""
    under_cache = tmp_path / ".cache" / "champion" / "models" / "tiny"
    shutil.copytree(small_folder, under_cache)
    (under_cache / ".cache").mkdir()
    (under_cache / ".cache" / "download.lock").write_text("huggingface_hub's own bookkeeping")
    fetched = fetch_weights(str(under_cache), tmp_path / ".cache" / "out", cache_dir=tmp_path / ".cache" / "weights")
    manifest = json.loads((fetched.path / MANIFEST_NAME).read_text())["files"]
    assert set(manifest) == {"config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors"}
