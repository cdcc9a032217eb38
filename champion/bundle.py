"""The bundle: what gets evaluated, gated and promoted as one unit.

A bundle is content-addressed: its id is the digest of the record below, so the same weights,
prompt, decoding parameters, evaluation set and evaluator configuration always give the same id,
and changing any of them gives a new one.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from champion.digests import sha256_json


class PromptRef(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    version: int
    digest: str


class Bundle(BaseModel):
    """The record a bundle id is the hash of. Locations (paths, URIs) are not part of it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_digest: str
    prompt: PromptRef
    decoding: dict
    dataset_digest: str
    evaluator_digest: str = ""

    @property
    def id(self) -> str:
        return sha256_json(self.model_dump(mode="json"))

    @property
    def short_id(self) -> str:
        return self.id[:12]
