"""The house's shape, checked: the import graph has no cycle (import-linter's floors contract in make lint
keeps arrows pointing down), kfp.local's private parts are reached through one adapter, functions stay
short enough to read, and every package says what it holds."""

import ast
import importlib
import pathlib

import grimp
import pytest

from champion.errors import ConfigError
from pipelines.kfp_local import KFP_SERIES, check_kfp_version
from tests.conftest import REPO

PACKAGES = [
    "champion",
    "prompts",
    "generation",
    "evaluators",
    "registry",
    "serving",
    "training",
    "components",
    "pipelines",
]


def _sources():
    for package in PACKAGES:
        yield from sorted((REPO / package).rglob("*.py"))


def test_the_import_graph_has_no_cycle():
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    cycles = [
        (module, imported)
        for module in graph.modules
        for imported in graph.find_modules_directly_imported_by(module)
        if graph.chain_exists(importer=imported, imported=module)
    ]
    assert not cycles, cycles


def test_only_the_adapter_reaches_into_kfp_local():
    reaching = []
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            if any(name.startswith("kfp.local.") for name in names):
                reaching.append(str(path.relative_to(REPO)))
    assert set(reaching) == {"pipelines/kfp_local.py"}


@pytest.mark.parametrize("installed", ["2.18.0", "3.0.1", "2.1.7"])
def test_the_adapter_refuses_a_kfp_it_was_not_written_for(installed):
    with pytest.raises(ConfigError, match=f"kfp {installed} is installed") as caught:
        check_kfp_version(installed)
    assert "pipelines/kfp_local.py" in caught.value.fix


def test_the_adapter_accepts_its_own_series():
    check_kfp_version(f"{KFP_SERIES}.0")
    check_kfp_version(f"{KFP_SERIES}.3")


def test_no_function_is_longer_than_a_reader_can_hold():
    long = [
        f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for path in _sources()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 100
    ]
    assert not long, long


@pytest.mark.parametrize("package", PACKAGES)
def test_every_package_says_what_it_holds(package):
    doc = importlib.import_module(package).__doc__ or ""
    assert len(doc.split()) >= 12, f"{package}/__init__.py needs an opening docstring that says what it holds"
    assert "(later)" not in doc


def test_nothing_but_step_modules_in_components():
    from components import registry

    modules = {path.stem for path in (REPO / "components").glob("*.py")} - {"__init__"}
    assert modules == set(registry())
    assert all(path.suffix == ".py" for path in pathlib.Path(REPO / "components").iterdir() if path.is_file())


def test_every_step_begins_as_a_step_process():
    """Step errors and spans are recorded by champion.step_process.begin_step, called by each step (never by
    importing champion): a step that forgot it would fail without its typed error and trace."""
    import inspect

    from components import registry

    forgot = [
        name
        for name, registered in registry().items()
        if "begin_step()" not in inspect.getsource(registered.op.python_func)
    ]
    assert not forgot
