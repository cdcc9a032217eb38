import math
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from champion.errors import BackendError
from generation import get_generator
from generation.batch import generate_answers
from generation.sizing import KVShape, fitting_batch_size
from generation.vllm_backend import sampling_kwargs
from prompts import Decoding, load_prompt

QUESTIONS = [
    "What is the capital of France?",
    "How many legs does a spider have?",
    "What is 7 times 8?",
    "Who wrote Romeo and Juliet?",
]


@pytest.fixture(scope="module")
def generator(smollm2):
    return get_generator("transformers", smollm2.path, batch_size=4)


@pytest.fixture(scope="module")
def sized_generator(smollm2):
    """The backend as the pipeline builds it on a CPU: batches sized from memory, prefixes shared."""
    from generation.transformers_backend import TransformersGenerator

    return TransformersGenerator(str(smollm2.path), device="cpu")


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
    from generation.cached import cached_generator

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


# -- batches sized for the device ------------------------------------------------------------------

SHAPES = st.builds(
    KVShape,
    layers=st.integers(1, 80),
    kv_heads=st.integers(1, 64),
    head_dim=st.sampled_from([64, 80, 128, 256]),
    dtype_bytes=st.sampled_from([2, 4]),
    vocab=st.integers(1_000, 260_000),
)


@settings(max_examples=300, deadline=None)
@given(
    shape=SHAPES,
    free=st.integers(0, 200 * 2**30),
    prompt=st.integers(1, 32_000),
    new=st.integers(1, 4_096),
    cap=st.integers(1, 1024),
)
def test_a_batch_fits_its_cache_in_free_memory_and_never_exceeds_the_cap(shape, free, prompt, new, cap):
    size = fitting_batch_size(free, shape, longest_prompt=prompt, max_new_tokens=new, cap=cap)
    assert 1 <= size <= cap
    if size > 1:  # every sequence's cache fits in the headroom (a single one is always tried)
        assert size * shape.bytes_per_sequence(prompt + new, prompt) <= 0.8 * free
    # More free memory never gives a smaller batch; longer prompts never a larger one.
    assert fitting_batch_size(2 * free, shape, longest_prompt=prompt, max_new_tokens=new, cap=cap) >= size
    assert fitting_batch_size(free, shape, longest_prompt=2 * prompt, max_new_tokens=new, cap=cap) <= size


def test_the_h200_measurement_would_have_run_at_the_cap():
    """SmolLM2-1.7B's shape (24 layers, 32 KV heads of 64, bf16) with 120 GiB free and the demo's short prompts:
    the cache of 256 sequences needs a few GiB, so the batch is the cap (the note's 20x over batch 16)."""
    shape = KVShape(layers=24, kv_heads=32, head_dim=64, dtype_bytes=2, vocab=49_152)
    assert fitting_batch_size(120 * 2**30, shape, longest_prompt=60, max_new_tokens=64) == 256
    assert fitting_batch_size(2 * 2**30, shape, longest_prompt=4_000, max_new_tokens=512) < 16


def test_on_a_cpu_the_batch_is_sized_from_the_hosts_memory_up_to_the_cap(smollm2, sized_generator):
    """The demo's 72 questions are one batch on a CPU (they fit many times over), not batches of 16."""
    from generation.sizing import available_host_memory
    from generation.transformers_backend import TransformersGenerator

    generator = sized_generator  # built with batch_size 0
    prompt = [1] * 60
    assert generator.batch_size == 256
    expected = fitting_batch_size(available_host_memory(), generator._kv_shape, longest_prompt=60, max_new_tokens=32)
    assert generator._batch_for([prompt] * 72, 32) == expected >= 72
    try:
        generator.batch_size = 8
        assert generator._batch_for([prompt] * 72, 32) == 8
    finally:
        generator.batch_size = 256
    with pytest.raises(BackendError, match="0 \\(sized for the device\\) or positive"):
        TransformersGenerator(str(smollm2.path), batch_size=-1, device="cpu")


@pytest.mark.parametrize(
    ("files", "headroom"),
    [
        ({"memory.max": "max\n", "memory.current": "100\n"}, None),  # cgroup v2 without a limit
        ({"memory.max": "8589934592\n", "memory.current": "1073741824\n"}, 7 * 2**30),  # a pod's 8 GiB limit
        ({"memory/memory.limit_in_bytes": "9223372036854771712", "memory/memory.usage_in_bytes": "5"}, None),  # v1
        ({"memory/memory.limit_in_bytes": "4096", "memory/memory.usage_in_bytes": "5000"}, 0),  # over its limit
        ({}, None),  # no cgroup files at all
    ],
)
def test_a_containers_memory_limit_bounds_the_cpu_batch(tmp_path, files, headroom):
    """/proc/meminfo shows the node's memory; a pod is killed at its cgroup's limit, so that is what sizes a batch."""
    from generation.sizing import _cgroup_headroom

    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert _cgroup_headroom(str(tmp_path)) == headroom


def test_a_sliding_window_model_reads_every_prompt_in_full(smollm2, sized_generator, tmp_path):
    """Sliding-window attention counts distance by index, so padding between a shared prefix and the suffix would
    change what a token sees: such a model (here SmolLM2 declared with a window) gets plain left padding."""
    import json
    import os

    from generation.transformers_backend import TransformersGenerator

    folder = tmp_path / "windowed"
    folder.mkdir()
    for path in Path(smollm2.path).iterdir():
        if path.is_file():
            os.link(path, folder / path.name)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").unlink()
    (folder / "config.json").write_text(json.dumps({**config, "sliding_window": 16}))
    windowed = TransformersGenerator(str(folder), device="cpu")
    ids = windowed._tokenize([[{"role": "user", "content": q}] for q in QUESTIONS])
    _, mask, cache, shared = windowed._encode(ids, share_prefix=True)
    assert not windowed._can_share_prefix and cache is None and shared == 0
    assert all(row[-1] == 1 for row in mask.tolist())  # left padding: every prompt ends at the batch's edge
    assert sized_generator._can_share_prefix


def _left_padded_greedy(generator, conversations, decoding) -> list[str]:
    """The reference: plain left padding, every prompt read in full (what the backend did before prefixes were shared)."""
    import torch

    tokenizer, model = generator.tokenizer, generator.model
    prompts = [
        tokenizer.apply_chat_template(list(c), tokenize=False, add_generation_prompt=True) for c in conversations
    ]
    encoded = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.inference_mode():
        output = model.generate(
            **encoded,
            max_new_tokens=decoding.max_tokens,
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
            pad_token_id=tokenizer.pad_token_id,
        )
    eos = generator._eos_ids()
    texts = []
    for row in output[:, encoded["input_ids"].shape[1] :].tolist():
        kept = row[: next((i for i, token in enumerate(row) if token in eos), len(row))]
        texts.append(tokenizer.decode(kept, skip_special_tokens=True).strip())
    return texts


@pytest.mark.parametrize("prompt_name", ["qa-evasive", "qa-concise"])
def test_a_shared_prefix_gives_the_answers_plain_left_padding_gives(sized_generator, prompt_name):
    """The backend reads a batch's common start once (its KV repeated) and pads between prefix and suffix; greedy
    answers must be those of reading every prompt in full with left padding, on real demo questions."""
    from champion.data import preprocess_data

    generator = sized_generator
    prompt = load_prompt(prompt_name)
    conversations = [prompt.render(question=row["question"]) for row in preprocess_data("demo", limit=12).eval_rows]
    shared = [g.text for g in generator.generate(conversations, prompt.decoding)]
    assert shared == _left_padded_greedy(generator, conversations, prompt.decoding)
    ids = generator._tokenize(conversations)
    _, mask, cache, prefix = generator._encode(ids, share_prefix=True)
    assert prefix >= 20 and cache is not None  # the chat template's system turn and the prompt's opening
    assert mask[:, :prefix].all() and (mask.sum(dim=1).tolist() == [len(i) for i in ids])


@pytest.mark.parametrize("read_tokens", [math.inf, 300])
def test_shared_prefix_label_scores_match_reading_each_prompt_alone(sized_generator, monkeypatch, read_tokens):
    """The judge's constrained choice: batched with a shared prefix, packed by length (in one batch, or in several
    under a bound on the tokens a pass reads), only the last position's logits computed; every label's
    log-probability within float noise of one prompt read alone, in the order the prompts were given."""
    from champion.data import preprocess_data
    from prompts import load_rubric

    generator = sized_generator
    monkeypatch.setattr(generator, "read_tokens", read_tokens)
    passes = []  # (rows, tokens per row counting the cached shared start) of each pass that reads the prompts

    def record(module, args, kwargs):
        rows, width = (kwargs["input_ids"] if "input_ids" in kwargs else args[0]).shape
        cache = kwargs.get("past_key_values")
        passes.append((rows, width + (cache.get_seq_length() if cache is not None else 0)))

    rubric = load_rubric("correctness")
    rows = preprocess_data("demo", limit=10).eval_rows
    answers = ["Paris", "I don't know", "", "a poem about the sea, rolling waves and salt"] * 3
    conversations = [
        rubric.render(question=r["question"], reference=r["reference"], answer=a) for r, a in zip(rows, answers)
    ]
    hook = generator.model.register_forward_pre_hook(record, with_kwargs=True)
    try:
        batched = generator.choice_logprobs(conversations, rubric.labels, rubric.verdict_prefix)
    finally:
        hook.remove()
    reads = [(rows, tokens) for rows, tokens in passes if rows > 1]  # the shared start's own pass reads one row
    if read_tokens != math.inf:  # the bound splits the 10 prompts into several passes, each within it
        assert len(reads) > 1 and all(rows * tokens <= read_tokens for rows, tokens in reads)
    alone = [generator.choice_logprobs([c], rubric.labels, rubric.verdict_prefix)[0] for c in conversations]
    for together, single in zip(batched, alone):
        assert together.prompt_tokens == single.prompt_tokens
        assert max(abs(together.logprobs[label] - single.logprobs[label]) for label in rubric.labels) < 1e-3


@settings(max_examples=300, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 400), max_size=60),
    size=st.integers(1, 64),
    read_tokens=st.one_of(st.just(math.inf), st.integers(1, 4096)),
)
@example(lengths=[2, 2], size=2, read_tokens=4)  # exactly at the bound: one batch
def test_packed_batches_hold_every_prompt_once_pad_little_and_keep_to_the_token_bound(lengths, size, read_tokens):
    from generation.transformers_backend import _packed

    prompts = [[0] * n for n in lengths]
    batches = _packed(prompts, size, read_tokens=read_tokens)
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    assert [i for batch in batches for i in batch] == order  # every prompt once, shortest first
    for batch in batches:
        assert 1 <= len(batch) <= size
        widths = [lengths[i] for i in batch]
        if len(batch) > 1:  # a batch of one pads nothing; a longer one pads at most an eighth of its tokens
            assert len(batch) * max(widths) <= (1 + 1 / 8) * sum(widths) + 1e-9
            assert len(batch) * max(widths) <= read_tokens  # and holds at most `read_tokens`, padding included
    # A batch closes only for a reason: the next prompt would break the size, the padding or the token bound.
    for batch, following in zip(batches, batches[1:]):
        n, longest, real = len(batch) + 1, lengths[following[0]], sum(lengths[i] for i in batch) + lengths[following[0]]
        assert n > size or n * longest > (1 + 1 / 8) * real or n * longest > read_tokens
    # Unbounded padding (generation): the prompts shortest first, in full batches of `size`.
    assert _packed(prompts, size, waste=math.inf) == [order[i : i + size] for i in range(0, len(order), size)]


def test_vllm_engine_settings_come_from_the_pipeline_parameters():
    from champion.errors import ConfigError
    from champion.parameters import PromotionParameters, parse
    from generation import engine_options
    from generation.vllm_backend import engine_kwargs

    options = engine_options("vllm", batch_size=0, tensor_parallel_size=4, max_num_seqs=512, gpu_memory_utilization=0.8)
    kwargs = engine_kwargs("/m", **{k: v for k, v in options.items() if k != "batch_size"})
    assert (kwargs["tensor_parallel_size"], kwargs["max_num_seqs"], kwargs["gpu_memory_utilization"]) == (4, 512, 0.8)
    assert engine_options("transformers", batch_size=8, tensor_parallel_size=4) == {"batch_size": 8}
    with pytest.raises(ConfigError, match="set them equal"):
        parse(PromotionParameters, {"generation_backend": "vllm", "tensor_parallel_size": 4})
    assert (
        parse(
            PromotionParameters, {"generation_backend": "vllm", "tensor_parallel_size": 4, "accelerator_count": 4}
        ).max_num_seqs
        == 256
    )
