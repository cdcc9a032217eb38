"""One input layer: every file champion reads as text goes through here.

- Text is UTF-8. A leading byte-order mark is accepted (and dropped) in every format alike; any other
  undecodable byte is an error naming the file, the line and the column.
- JSON Lines are split on ``\\n`` only, as the JSON Lines format says (``str.splitlines`` would also
  split inside a value on U+2028, U+0085, form feeds...); a trailing ``\\r`` is whitespace to JSON.
- CSV columns are read as text, exactly as written: an id ``007`` stays ``007``, a reference ``3.0``
  stays ``3.0``, whatever the quoting.
- ``has_visible_text`` tells a real value from one made only of spaces and invisible characters.
- ``check_output_path`` / ``check_folder`` validate paths before any work starts.
"""

from __future__ import annotations

import csv
import io
import json
import unicodedata
from pathlib import Path

from champion.errors import ChampionError, DataError

BOM = "\ufeff"
# Categories with nothing to see: separators, controls, format characters (zero-width space, joiners,
# BOM, direction marks), unassigned and private-use code points, and combining marks on their own.
_INVISIBLE = {"Zs", "Zl", "Zp", "Cc", "Cf", "Cn", "Co", "Cs", "Mn", "Me"}


def decode(raw: bytes, source: str, error: type[ChampionError] = DataError) -> str:
    """UTF-8 text of ``raw``; a leading BOM is dropped. Undecodable bytes name their line and column."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line = before.count(b"\n") + 1
        column = exc.start - (before.rfind(b"\n") + 1) + 1
        raise error(
            f"{source}, line {line}, column {column}: not UTF-8 text (byte 0x{raw[exc.start]:02x}).",
            "re-encode the file as UTF-8.",
        ) from exc
    return text.removeprefix(BOM)


def read_text(path: str | Path, what: str = "file", error: type[ChampionError] = DataError) -> str:
    """Read ``path`` as UTF-8 text with errors a user can act on."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except IsADirectoryError as exc:
        raise error(f"{what} {path} is a folder, not a file.", "pass the path of the file itself.") from exc
    except FileNotFoundError as exc:
        raise error(f"{what} {path} does not exist.", "check the path.") from exc
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror}.", "check the path and its permissions.") from exc
    return decode(raw, str(path), error)


def _json(text: str, source: str, fix: str, *, whole_file: bool = False):
    """json.loads with the error placed in the file (for one line, ``source`` already names it)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}" if whole_file else f"column {exc.colno}"
        raise DataError(f"{source}, {where}: invalid JSON ({exc.msg}).", fix) from exc
    except RecursionError as exc:
        raise DataError(f"{source}: JSON nested too deeply.", fix) from exc


def parse_json_lines(text: str, source: str) -> list[dict]:
    """One JSON object per ``\\n``-separated line; blank lines are skipped."""
    rows = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip(" \t\r"):
            continue
        value = _json(line, f"{source}, line {number}", "each line must be one JSON object.")
        if not isinstance(value, dict):
            raise DataError(
                f"{source}, line {number}: expected a JSON object, got {type(value).__name__}.",
                "each line must be one JSON object.",
            )
        rows.append(value)
    return rows


def parse_json_array(text: str, source: str) -> list[dict]:
    value = _json(text, source, "a .json evaluation set is one array of objects (or use .jsonl).", whole_file=True)
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(row, dict) for row in value):
        raise DataError(
            f"{source}: expected an array of JSON objects.",
            'write [{"question": ..., "reference": ...}, ...] or use .jsonl.',
        )
    return value


def parse_csv(text: str, source: str) -> list[dict]:
    """Rows of a CSV with a header; every value is the text between the delimiters, unquoted."""
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
    try:
        header = reader.fieldnames or []
        if len(set(header)) != len(header):
            duplicated = sorted({h for h in header if header.count(h) > 1})
            raise DataError(
                f"{source}: the header names column(s) {duplicated} more than once.", "give every column a unique name."
            )
        rows = []
        for row in reader:
            if None in row:  # more fields than the header has names
                raise DataError(
                    f"{source}, line {reader.line_num}: {len(header) + len(row[None])} fields, but the header has {len(header)}.",
                    "quote values that contain the delimiter.",
                )
            rows.append({key: value for key, value in row.items() if value is not None})
    except csv.Error as exc:
        raise DataError(
            f"{source}, line {reader.line_num}: malformed CSV ({exc}).", "check the quoting on that line."
        ) from exc
    return rows


def has_visible_text(value: str) -> bool:
    """True when at least one character would show up on screen."""
    return any(unicodedata.category(char) not in _INVISIBLE for char in value)


def check_folder(
    path: str | Path, what: str, *, must_exist: bool = True, error: type[ChampionError] = DataError
) -> Path:
    """A folder champion reads (``must_exist``) or creates: never an existing file."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise error(f"{what} {path} is a file, not a folder.", f"pass a folder for the {what}, or move the file away.")
    if must_exist and not path.is_dir():
        raise error(f"{what} {path} does not exist.", f"create it, or pass an existing folder for the {what}.")
    return path
