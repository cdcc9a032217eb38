"""The vLLM API our backend is written against, read from the published wheel, and the check of
``vllm_backend.py`` against it. vLLM cannot be installed beside the CPU torch, so instead of importing
it, the contract is the signatures in the wheel's source (parsed, never executed):

- ``LLM.__init__`` and ``LLM.chat`` parameters (``LLM.generate``'s too, for reference) (``vllm/entrypoints/llm.py``);
- ``EngineArgs`` fields, which ``LLM(**kwargs)`` forwards to (``vllm/engine/arg_utils.py``);
- ``SamplingParams`` fields (``vllm/sampling_params.py``).

``python -m generation.vllm_contract PATH_TO_WHEEL`` rewrites the vendored contract
(``vllm-<version>.contract.json``) when the pinned release changes; tests compare our backend's
calls with it, and with a fresh extraction from the wheel when the package registry is reachable.
"""

from __future__ import annotations

import ast
import hashlib
import json
import sys
import zipfile
from pathlib import Path

from generation import vllm_backend
from prompts import Decoding

PINNED = "0.33.0"
CONTRACT_PATH = Path(__file__).resolve().parent / f"vllm-{PINNED}.contract.json"
_SOURCES = {
    "llm": "vllm/entrypoints/llm.py",
    "engine_args": "vllm/engine/arg_utils.py",
    "sampling_params": "vllm/sampling_params.py",
}


def _class(tree: ast.Module, name: str) -> ast.ClassDef:
    return next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == name)


def _parameters(function: ast.FunctionDef) -> list[str]:
    args = function.args
    return [a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs] if a.arg != "self"]


def _fields(cls: ast.ClassDef) -> list[str]:
    return [
        node.target.id
        for node in cls.body
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and not node.target.id.startswith("_")
    ]


def extract_contract(wheel: str | Path) -> dict:
    wheel = Path(wheel)
    with zipfile.ZipFile(wheel) as archive:
        trees = {key: ast.parse(archive.read(path).decode()) for key, path in _SOURCES.items()}
    llm = _class(trees["llm"], "LLM")
    methods = {node.name: node for node in llm.body if isinstance(node, ast.FunctionDef)}
    return {
        "vllm": wheel.name.split("-")[1],
        "wheel": wheel.name,
        "wheel_sha256": hashlib.sha256(wheel.read_bytes()).hexdigest(),
        "LLM.__init__": _parameters(methods["__init__"]),
        "LLM.chat": _parameters(methods["chat"]),
        "LLM.generate": _parameters(methods["generate"]),
        "EngineArgs": _fields(_class(trees["engine_args"], "EngineArgs")),
        "SamplingParams": _fields(_class(trees["sampling_params"], "SamplingParams")),
    }


def load_contract(path: Path = CONTRACT_PATH) -> dict:
    return json.loads(path.read_text())


def backend_calls(adapter_dir: Path | None = None) -> dict[str, set[str]]:
    """The keyword arguments vllm_backend.py passes to each vLLM entry point, from its pure builders
    (with a LoRA adapter when ``adapter_dir`` holds one, so the adapter path is checked too)."""

    model_path = str(adapter_dir) if adapter_dir else "/models/base"
    return {
        "LLM": set(vllm_backend.engine_kwargs(model_path)),
        "LLM.chat": set(vllm_backend.chat_kwargs()),
        "SamplingParams": set(vllm_backend.sampling_kwargs(Decoding(stop=("\n",))))
        | set(vllm_backend.sampling_kwargs(Decoding(temperature=0.7))),
    }


def check_backend(contract: dict, calls: dict[str, set[str]] | None = None) -> list[str]:
    """Every argument our backend passes that the pinned vLLM does not accept."""
    calls = calls if calls is not None else backend_calls()
    accepted = {
        "LLM": set(contract["LLM.__init__"]) | set(contract["EngineArgs"]),
        "LLM.chat": set(contract["LLM.chat"]),
        "SamplingParams": set(contract["SamplingParams"]),
    }
    return sorted(
        f"{target}({name}=...) is not accepted by vLLM {contract['vllm']}"
        for target, names in calls.items()
        for name in names - accepted[target]
    )


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m generation.vllm_contract PATH_TO_VLLM_WHEEL")
    contract = extract_contract(sys.argv[1])
    target = CONTRACT_PATH.with_name(f"vllm-{contract['vllm']}.contract.json")
    target.write_text(json.dumps(contract, indent=1) + "\n")
    print(target)
