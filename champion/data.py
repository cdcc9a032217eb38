"""preprocess_data: load an evaluation set, validate it, normalise it, split it, digest it."""

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from champion import inputs
from champion.digests import canonical_json, sha256_json
from champion.errors import DataError
from champion.inputs import has_visible_text
from champion.pinning import pin_source
from champion.request_records import RequestRecord, replayable

REQUIRED_COLUMNS = ("question", "reference")
OPTIONAL_COLUMNS = ("id", "context", "tags")
DEMO_DATA = Path(__file__).resolve().parent.parent / "pipelines" / "data" / "demo_eval.jsonl"
_WHITESPACE = re.compile(r"\s+")


# A request log (serving/request_log.py) is recognised by these fields of its records.
REQUEST_RECORD_FIELDS = frozenset({"request_id", "bundle_id", "prompt_digest", "model_digest", "status"})


@dataclass
class PreprocessResult:
    eval_rows: list[dict]
    train_rows: list[dict]
    digest: str
    dropped_duplicates: int
    ignored_columns: list[str] = field(default_factory=list)
    reference_free: bool = False  # logged production requests: questions and served answers, no references


def is_request_log(rows: list[dict]) -> bool:
    return bool(rows) and all(REQUEST_RECORD_FIELDS <= row.keys() for row in rows)


def traffic_rows(rows: list[dict], source: str, *, limit: int, seed: int) -> tuple[list[dict], int]:
    """Logged production requests as reference-free examples: answered requests with captured content, one
    per distinct question (whitespace-normalised), a seeded sample of ``limit`` of them (0 = all). Each row
    keeps what was served: ``served_answer`` and ``served_bundle``. Returns (rows, duplicates dropped)."""
    try:
        records = [RequestRecord.model_validate(row) for row in rows]
    except ValueError as exc:
        raise DataError(
            f"{source} looks like a request log, but a record does not parse: {str(exc)[:300]}",
            "pass a log written by champion's prompt transformer or its log sink, unedited.",
        ) from exc
    normalised = [
        r.model_copy(update={"question": normalise_text(r.question)}) if r.question is not None else r for r in records
    ]
    chosen = replayable(normalised, limit=limit, seed=seed)
    if not chosen:
        raise DataError(
            f"{source} holds no answered request with its question and answer: content capture was off.",
            "log with content capture (`champion serve --log-content`, or log_content=true on the cluster).",
        )
    answered = sum(1 for r in normalised if r.status == 200 and r.question is not None and r.answer is not None)
    examples = [
        {
            "id": r.request_id,
            "question": r.question or "",
            "reference": "",
            "served_answer": r.answer or "",
            "served_bundle": r.bundle_id,
        }
        for r in sorted(chosen, key=lambda r: r.request_id)
    ]
    return examples, answered - len(replayable(normalised))


def resolve_source(source: str) -> str:
    """``demo`` names the evaluation set packaged with champion."""
    return str(DEMO_DATA) if source == "demo" else source


def load_rows(source: str) -> list[dict]:
    """Load rows: a JSONL/JSON/CSV file through champion's input layer (UTF-8, JSON Lines split on
    ``\n`` only, CSV values kept as the exact text written), or with ``datasets``: a Parquet file, a
    ``save_to_disk`` folder, or a dataset in the local Hugging Face cache (``hf://datasets/<name>``).
    Nothing is downloaded."""

    if source.startswith("hf://datasets/"):
        return _load_cached_dataset(source.removeprefix("hf://datasets/"))
    path = Path(source)
    if not path.exists():
        raise DataError(
            f"evaluation set {source} does not exist.", "pass --data with a JSONL, CSV or Parquet file, or 'demo'."
        )
    suffix = path.suffix.lower()
    if not path.is_dir() and suffix not in {".jsonl", ".json", ".csv", ".parquet"}:
        raise DataError(f"{source}: unsupported file type {path.suffix!r}.", "use .jsonl, .json, .csv or .parquet.")
    if path.is_file() and path.stat().st_size == 0:
        raise DataError(f"{source} is empty.", "add rows with 'question' and 'reference' columns.")
    if suffix == ".jsonl":
        return inputs.parse_json_lines(inputs.read_text(path, "evaluation set"), source)
    if suffix == ".json":
        text = inputs.read_text(path, "evaluation set")
        return (
            inputs.parse_json_array(text, source)
            if text.lstrip().startswith("[")
            else inputs.parse_json_lines(text, source)
        )
    if suffix == ".csv":
        return inputs.parse_csv(inputs.read_text(path, "evaluation set"), source)
    return _load_with_datasets(path, source)


def _load_with_datasets(path: Path, source: str) -> list[dict]:
    """A Parquet file or a ``save_to_disk`` folder (its ``test`` split, else its first), through ``datasets``."""
    import datasets

    datasets.disable_progress_bars()
    try:
        if path.is_dir():
            loaded = datasets.load_from_disk(str(path))
            if isinstance(loaded, datasets.DatasetDict):
                loaded = loaded["test"] if "test" in loaded else next(iter(loaded.values()))
            return list(loaded)
        return list(datasets.load_dataset("parquet", data_files=str(path), split="train", keep_in_memory=True))
    except Exception as exc:  # datasets wraps parser errors in many types; name the source and the cause
        raise DataError(
            f"could not load evaluation set {source}: {type(exc).__name__}: {exc}",
            "check that it is a Parquet file or a datasets save_to_disk folder.",
        ) from exc


def _load_cached_dataset(name: str) -> list[dict]:
    import datasets

    datasets.disable_progress_bars()
    try:
        return list(datasets.load_dataset(name, split="train", download_mode="reuse_cache_if_exists"))
    except Exception as exc:
        raise DataError(
            f"hf://datasets/{name} is not in the local Hugging Face cache ({type(exc).__name__}); champion never downloads at run time.",
            "download it once where there is network (datasets.load_dataset) so it is cached, or save it with save_to_disk and pass that folder.",
        ) from exc


def normalise_text(value: str) -> str:
    return _WHITESPACE.sub(" ", value).strip()


# A field longer than this is almost certainly a mistake (a whole document pasted into a question),
# and would silently blow the model's context and the run's memory.
MAX_FIELD_CHARS = 100_000


def validate_and_normalise(rows: list[dict], source: str) -> tuple[list[dict], int, list[str]]:
    if not rows:
        raise DataError(f"evaluation set {source} has no rows.", "add rows with 'question' and 'reference' columns.")
    columns = set().union(*(row.keys() for row in rows))
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise DataError(
            f"evaluation set {source} lacks required column(s) {missing}; it has {sorted(columns)}.",
            "rename your columns to 'question' and 'reference' (optional: id, context, tags).",
        )
    ignored = sorted(columns - set(REQUIRED_COLUMNS) - set(OPTIONAL_COLUMNS))
    clean: list[dict] = []
    seen_content: set[str] = set()
    seen_ids: dict[str, int] = {}
    duplicates = 0
    for number, row in enumerate(rows, start=1):
        record = _normalised_record(row, source, number)
        content_key = canonical_json(record)
        if content_key in seen_content:
            duplicates += 1
            continue
        seen_content.add(content_key)
        record_id = _record_id(row.get("id"), record, source, number)
        if record_id in seen_ids:
            raise DataError(
                f"{source}, row {number}: id {record_id!r} is already used by row {seen_ids[record_id]} with different content.",
                "give every example a unique id.",
            )
        seen_ids[record_id] = number
        clean.append({"id": record_id, **record})
    return clean, duplicates, ignored


def _normalised_record(row: dict, source: str, number: int) -> dict:
    """One row's question, reference, context and tags, checked and normalised (without its id)."""
    record: dict[str, str | list[str]] = {
        column: _required_text(row.get(column), column, source, number) for column in REQUIRED_COLUMNS
    }
    context = row.get("context")
    if context not in (None, ""):
        if not isinstance(context, str):
            raise DataError(
                f"{source}, row {number}, column 'context': expected text, got {type(context).__name__}.",
                "make 'context' a string.",
            )
        if len(context) > 10 * MAX_FIELD_CHARS:
            raise DataError(
                f"{source}, row {number}, column 'context' is {len(context):,} characters long, longer than the {10 * MAX_FIELD_CHARS:,} allowed.",
                "shorten it, or retrieve less context per example.",
            )
        record["context"] = normalise_text(context)
    tags = _tags(row.get("tags"), source, number)
    if tags:
        record["tags"] = tags
    return record


def _required_text(value, column: str, source: str, number: int) -> str:
    if not isinstance(value, str):
        raise DataError(
            f"{source}, row {number}, column {column!r}: expected text, got {type(value).__name__} {value!r}.",
            f"give every row a text {column!r}.",
        )
    if len(value) > MAX_FIELD_CHARS:
        raise DataError(
            f"{source}, row {number}, column {column!r} is {len(value):,} characters long, longer than the {MAX_FIELD_CHARS:,} allowed.",
            "shorten it (an evaluation example is a question and its answer, not a document), or drop the row.",
        )
    text = normalise_text(value)
    if not text:
        raise DataError(f"{source}, row {number}, column {column!r} is empty.", f"fill in {column!r} or drop the row.")
    if not has_visible_text(text):
        raise DataError(
            f"{source}, row {number}, column {column!r} holds only invisible characters ({text!r}).",
            f"fill in a visible {column!r} or drop the row.",
        )
    return text


def _tags(tags, source: str, number: int) -> list[str]:
    if isinstance(tags, str) and tags.strip().startswith("["):  # a CSV cell holding a JSON list
        try:
            tags = json.loads(tags)
        except ValueError:
            pass
    if tags in (None, "", []):
        return []
    tags = [tags] if isinstance(tags, str) else tags
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise DataError(
            f"{source}, row {number}, column 'tags': expected a list of strings.", 'write tags as ["a", "b"].'
        )
    return sorted(set(tags))


def _record_id(given_id, record: dict, source: str, number: int) -> str:
    """The row's own id, or one derived from its content."""
    if given_id in (None, ""):
        return "q-" + sha256_json(record)[:12]
    if isinstance(given_id, bool) or not isinstance(given_id, (str, int)):
        raise DataError(
            f"{source}, row {number}, column 'id': expected text, got {type(given_id).__name__}.", "make ids strings."
        )
    return str(given_id)


def split(rows: list[dict], eval_fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """Assign each example by a seeded hash of its id: deterministic, and stable when rows are added."""
    if not 0.0 < eval_fraction <= 1.0:
        raise DataError(
            f"eval_fraction must be in (0, 1], got {eval_fraction}.", "use e.g. 0.5 to keep half for evaluation."
        )
    eval_rows: list[dict] = []
    train_rows: list[dict] = []
    for row in rows:
        bucket = int(sha256_json([seed, row["id"]])[:8], 16) / 0xFFFFFFFF
        (eval_rows if bucket < eval_fraction or eval_fraction == 1.0 else train_rows).append(row)
    return eval_rows, train_rows


def preprocess_data(source: str, *, eval_fraction: float = 1.0, seed: int = 0, limit: int = 0) -> PreprocessResult:
    """Load, validate, normalise, de-duplicate and split an evaluation set.

    ``limit`` > 0 keeps the first N evaluation examples (in id order), for quick runs. A request log
    (serving/request_log.py) becomes reference-free examples instead (``traffic_rows``).
    """
    source = resolve_source(source)
    loaded = load_rows(source)
    if limit < 0:
        raise DataError(f"limit must be 0 (all) or positive, got {limit}.", "pass --limit N with N >= 1.")
    if is_request_log(loaded):
        # Production traffic is evaluated, never trained on: no split, and ``limit`` is a seeded sample.
        examples, duplicates = traffic_rows(loaded, source, limit=limit, seed=seed)
        return PreprocessResult(examples, [], sha256_json(examples), duplicates, reference_free=True)
    rows, duplicates, ignored = validate_and_normalise(loaded, source)
    rows.sort(key=lambda r: r["id"])
    eval_rows, train_rows = split(rows, eval_fraction, seed)
    if limit:
        eval_rows = eval_rows[:limit]
    if not eval_rows:
        raise DataError(f"no evaluation examples left in {source} after the split.", "raise eval_fraction or add rows.")
    return PreprocessResult(
        eval_rows=eval_rows,
        train_rows=train_rows,
        digest=sha256_json(eval_rows),
        dropped_duplicates=duplicates,
        ignored_columns=ignored,
    )


def pin_data(source: str) -> str:
    return pin_source(source, DEMO_DATA if source == "demo" else None)
