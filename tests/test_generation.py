import pytest

from champion.errors import BackendError
from prompts import Decoding, load_prompt
from serving.generation import get_generator
from serving.generation.batch import generate_answers
from serving.generation.vllm_backend import sampling_kwargs

QUESTIONS = [
    "What is the capital of France?",
    "How many legs does a spider have?",
    "What is 7 times 8?",
    "Who wrote Romeo and Juliet?",
]


@pytest.fixture(scope="module")
def generator(smollm2):
    return get_generator("transformers", smollm2.path, batch_size=4)


def test_batched_greedy_equals_one_by_one(generator):
    prompt = load_prompt("qa-concise")
    conversations = [prompt.render(question=q) for q in QUESTIONS]
    batched = generator.generate(conversations, prompt.decoding)
    one_by_one = [generator.generate([c], prompt.decoding)[0] for c in conversations]
    assert [g.text for g in batched] == [g.text for g in one_by_one]
    assert "Paris" in batched[0].text
    assert all(g.finish_reason == "stop" and g.prompt_tokens > 10 for g in batched)


def test_max_tokens_gives_finish_reason_length(generator):
    conversation = load_prompt("qa-oneline").render(question="Describe the history of Rome in detail.")
    (generation,) = generator.generate([conversation], Decoding(max_tokens=3))
    assert generation.finish_reason == "length" and generation.completion_tokens == 3


def test_generate_answers_records_tokens_and_keeps_order(generator):
    examples = [{"id": f"q{i}", "question": q, "reference": "x"} for i, q in enumerate(QUESTIONS)]
    run = generate_answers(examples, load_prompt("qa-concise"), generator)
    assert [r["id"] for r in run.rows] == ["q0", "q1", "q2", "q3"]
    assert run.completion_tokens == sum(r["completion_tokens"] for r in run.rows) > 0
    assert run.tokens_per_second > 0 and run.generated == 4 and run.generated_tokens == run.completion_tokens


def test_throughput_counts_generated_work_only(smollm2, tmp_path):
    """An answer the per-example cache gives back costs no generation: it is not throughput. A run where
    everything hits reports no tokens per second (it used to report ~437,000)."""
    from champion.cache import ExampleCache
    from serving.generation.cached import cached_generator

    examples = [{"id": f"q{i}", "question": q, "reference": "x"} for i, q in enumerate(QUESTIONS)]
    cache = ExampleCache(str(tmp_path / "cache"))

    def cached():
        return cached_generator(
            "transformers", str(smollm2.path), cache, {"model_digest": smollm2.digest}, batch_size=4
        )

    first = generate_answers(examples[:2], load_prompt("qa-concise"), cached())
    assert first.generated == 2 and first.tokens_per_second > 0
    mixed = generate_answers(examples, load_prompt("qa-concise"), cached())
    assert mixed.generated == 2 and 0 < mixed.generated_tokens < mixed.completion_tokens and mixed.tokens_per_second > 0
    replay = generate_answers(examples, load_prompt("qa-concise"), cached())
    assert replay.generated == 0 and replay.generated_tokens == 0 and replay.tokens_per_second is None
    assert [r["output"] for r in replay.rows] == [r["output"] for r in mixed.rows]


def test_missing_prompt_variable_column_is_named(generator, tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(
        "name: ctx\nversion: 1\nvariables: [context, question]\nmessages:\n  - role: user\n    content: '{{ context }} {{ question }}'\n"
    )
    with pytest.raises(Exception, match=r"needs column\(s\) \['context'\]"):
        generate_answers([{"id": "a", "question": "q", "reference": "r"}], load_prompt(str(path)), generator)


def test_unknown_backend_suggests_the_close_name():
    with pytest.raises(BackendError, match="did you mean 'vllm'"):
        get_generator("vlm", "/nowhere")


def test_vllm_backend_without_vllm_gives_an_install_hint():
    pytest.importorskip("torch")
    try:
        import vllm  # noqa: F401
    except ImportError:
        with pytest.raises(BackendError, match="GPU image"):
            get_generator("vllm", "/nowhere")
    else:
        pytest.skip("vllm is installed here; the missing-package path cannot be exercised")


def test_vllm_sampling_sets_every_field_explicitly():
    greedy = sampling_kwargs(Decoding(temperature=0.0, max_tokens=12, seed=3, stop=("\n",)))
    assert (
        greedy["max_tokens"] == 12 and greedy["temperature"] == 0.0 and greedy["seed"] == 3 and greedy["stop"] == ["\n"]
    )
    assert set(greedy) >= {
        "n",
        "top_p",
        "top_k",
        "min_p",
        "presence_penalty",
        "frequency_penalty",
        "repetition_penalty",
    }
    assert greedy["top_k"] == 0  # 0 disables top-k in vLLM 0.33; -1 is only tolerated
