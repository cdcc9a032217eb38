"""A content-addressed cache of per-example results: generations, judge verdicts, embeddings.

An entry's key is the sha256 of everything that determines it (for a generation: the model digest,
backend, the rendered conversation, every decoding parameter including the seed), so a hit can never
be stale: anything that would change the result changes the key. Entries live at
``<root>/<kind>/<key[:2]>/<key>.json``, where root is a local folder or any fsspec URL (s3://, gs://).

Writes are atomic (a temporary file renamed into place locally; one PUT per object on object
stores), so a step killed midway leaves no half entry, and several writers of the same key write the
same bytes. Each entry carries a checksum of its value: a corrupt or truncated entry is counted,
ignored and recomputed.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from champion.digests import canonical_json, sha256_json


class ExampleCache:
    def __init__(self, root: str | Path = "") -> None:
        self.root = str(root).rstrip("/")
        self.stats: Counter = Counter()
        self._local = bool(self.root) and ("://" not in self.root or self.root.startswith("file://"))
        self._fs = None
        if self.root and not self._local:
            import fsspec

            self._fs, self._base = fsspec.core.url_to_fs(self.root)

    @property
    def enabled(self) -> bool:
        return bool(self.root)

    @staticmethod
    def key(*parts: Any) -> str:
        return sha256_json(list(parts))

    def _path(self, kind: str, key: str) -> str:
        relative = f"{kind}/{key[:2]}/{key}.json"
        if self._local:
            return str(Path(self.root.removeprefix("file://")) / relative)
        return f"{self._base}/{relative}"

    def _read(self, path: str) -> bytes | None:
        try:
            if self._local:
                return Path(path).read_bytes()
            assert self._fs is not None  # set for every remote root
            return self._fs.cat_file(path)
        except (FileNotFoundError, OSError):
            return None

    def get_many(self, kind: str, keys: list[str]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        if not self.enabled:
            self.stats[f"{kind}.misses"] += len(keys)
            return found
        for key in dict.fromkeys(keys):
            raw = self._read(self._path(kind, key))
            if raw is None:
                self.stats[f"{kind}.misses"] += 1
                continue
            try:
                entry = json.loads(raw)
                valid = entry["key"] == key and entry["sha256"] == sha256_json(entry["value"])
            except (ValueError, KeyError, TypeError):
                valid = False
            if not valid:
                self.stats[f"{kind}.corrupt"] += 1
                self.stats[f"{kind}.misses"] += 1
                continue
            found[key] = entry["value"]
            self.stats[f"{kind}.hits"] += 1
        return found

    def put_many(self, kind: str, values: dict[str, Any]) -> None:
        if not self.enabled:
            return
        for key, value in values.items():
            data = canonical_json({"key": key, "value": value, "sha256": sha256_json(value)}).encode("utf-8")
            path = self._path(kind, key)
            if self._local:
                folder = Path(path).parent
                folder.mkdir(parents=True, exist_ok=True)
                handle, temporary = tempfile.mkstemp(dir=folder, prefix=".tmp-")
                with os.fdopen(handle, "wb") as stream:
                    stream.write(data)
                os.replace(temporary, path)
            else:
                assert self._fs is not None
                self._fs.pipe_file(path, data)

    def totals(self) -> dict[str, dict[str, int]]:
        """Hits, misses and corrupt entries per kind (generation, embedding, judge): artifact metadata the CLI sums."""
        kinds = sorted({name.split(".")[0] for name in self.stats})
        return {k: {what: int(self.stats[f"{k}.{what}"]) for what in ("hits", "misses", "corrupt")} for k in kinds}

    def summary(self) -> str:
        kinds = sorted({name.split(".")[0] for name in self.stats})
        return "; ".join(
            f"{k} {self.stats[k + '.hits']} hits, {self.stats[k + '.misses']} misses, {self.stats[k + '.corrupt']} corrupt"
            for k in kinds
        )
