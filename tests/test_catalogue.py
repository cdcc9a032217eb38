"""tests/CATALOGUE.md points at tests that exist: a case whose test was renamed or removed is caught here."""

import ast
import re

from tests.conftest import REPO


def test_every_test_the_catalogue_names_exists():
    text = (REPO / "tests" / "CATALOGUE.md").read_text(encoding="utf-8")
    assert len(re.findall(r"::test_\w+", text)) > 60
    defined: dict[str, set[str]] = {}
    for path in (REPO / "tests").glob("test_*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        defined[path.name] = {
            node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
        }
    missing = []
    for row in text.splitlines():
        current = None
        for reference in re.findall(r"`([\w./]*::test_\w+|::test_\w+)`", row):
            module, _, name = reference.partition("::")
            current = module or current
            if current is None or name not in defined.get(current, set()):
                missing.append(reference)
    assert missing == []
