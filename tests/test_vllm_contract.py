"""Our vLLM backend held to the real vLLM API without a GPU or vLLM installed.

The contract (generation/vllm-0.33.0.contract.json) is the signatures read from the source in
the published vllm 0.33.0 wheel; every keyword our backend passes to LLM(...), LLM.chat(...) and
SamplingParams(...) must be in it. Not proven: runtime behaviour of vLLM (that needs a GPU).
"""

import copy
import json
import subprocess
import sys

import pytest

from generation.vllm_contract import PINNED, backend_calls, check_backend, extract_contract, load_contract


@pytest.fixture
def adapter_model(tmp_path):
    adapter = tmp_path / "lora-adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"r": 16}))
    return tmp_path


def test_our_backend_only_passes_arguments_the_pinned_vllm_accepts(adapter_model):
    contract = load_contract()
    assert contract["vllm"] == PINNED
    assert check_backend(contract) == []
    calls = backend_calls(adapter_model)
    assert {"enable_lora", "max_lora_rank", "max_loras"} <= calls["LLM"]  # the LoRA-adapter path is checked too
    assert check_backend(contract, calls) == []


@pytest.mark.parametrize(
    "section, old, new, flagged",
    [
        ("SamplingParams", "max_tokens", "max_new_tokens", "SamplingParams(max_tokens=...)"),
        ("EngineArgs", "max_model_len", "max_seq_len", "LLM(max_model_len=...)"),
        ("LLM.chat", "use_tqdm", "show_progress", "LLM.chat(use_tqdm=...)"),
        ("EngineArgs", "enable_lora", "lora_enabled", "LLM(enable_lora=...)"),
    ],
)
def test_a_renamed_argument_upstream_fails_the_check(adapter_model, section, old, new, flagged):
    contract = copy.deepcopy(load_contract())
    contract[section] = [new if name == old else name for name in contract[section]]
    problems = check_backend(contract, backend_calls(adapter_model))
    assert any(problem.startswith(flagged) for problem in problems), problems


def test_the_vendored_contract_is_what_the_published_wheel_says(tmp_path_factory):
    """Re-reads the signatures from the real wheel (downloaded from the package registry, ~340 MB)."""
    import os

    wheel_dir = os.environ.get("CHAMPION_VLLM_WHEEL_DIR") or str(tmp_path_factory.mktemp("vllm-wheel"))
    wheels = sorted(p for p in os.listdir(wheel_dir) if p.startswith(f"vllm-{PINNED}-") and p.endswith(".whl"))
    if not wheels:
        result = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", f"vllm=={PINNED}", "-d", wheel_dir],
            capture_output=True,
            text=True,
            timeout=900,
        )
        wheels = sorted(p for p in os.listdir(wheel_dir) if p.startswith(f"vllm-{PINNED}-") and p.endswith(".whl"))
        if result.returncode != 0 or not wheels:
            pytest.skip(
                f"the vllm {PINNED} wheel could not be downloaded (no package registry?): {result.stderr.strip()[-300:]}"
            )
    fresh = extract_contract(os.path.join(wheel_dir, wheels[0]))
    vendored = load_contract()
    if fresh["wheel"] != vendored["wheel"]:
        pytest.skip(
            f"the registry offers {fresh['wheel']}, the contract was read from {vendored['wheel']} (another platform tag)"
        )
    assert fresh == vendored
