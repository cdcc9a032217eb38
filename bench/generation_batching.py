"""Batched vs one-by-one generation on the packaged SmolLM2, same prompts, same run.

    .venv/bin/python bench/generation_batching.py [--examples 32] [--batch-size 16] [--max-tokens 32]

Prints tokens/s for both and their ratio, and checks that greedy outputs are identical.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def measure(generator, conversations, decoding) -> tuple[float, int, list[str]]:
    started = time.perf_counter()
    generations = generator.generate(conversations, decoding)
    seconds = time.perf_counter() - started
    tokens = sum(g.completion_tokens for g in generations)
    return seconds, tokens, [g.text for g in generations]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=32)
    args = parser.parse_args()

    import torch

    from champion.data import preprocess_data
    from champion.weights import fetch_weights
    from generation import get_generator
    from prompts import load_prompt

    weights = fetch_weights("smollm2", tempfile.mkdtemp(prefix="bench-weights-"))
    prompt = load_prompt("qa-concise")
    decoding = prompt.decoding.model_copy(update={"max_tokens": args.max_tokens})
    rows = preprocess_data("demo", limit=args.examples).eval_rows
    conversations = [prompt.render(question=row["question"]) for row in rows]
    generator = get_generator("transformers", weights.path, batch_size=args.batch_size)
    generator.generate(conversations[:2], decoding)  # warm-up: first-call kernels and allocations

    batched_s, batched_tokens, batched_text = measure(generator, conversations, decoding)
    generator.batch_size = 1
    single_s, single_tokens, single_text = measure(generator, conversations, decoding)

    batched_tps, single_tps = batched_tokens / batched_s, single_tokens / single_s
    same = sum(a == b for a, b in zip(batched_text, single_text))
    print(f"model: SmolLM2-135M-Instruct fp32 on {generator.device}, torch threads {torch.get_num_threads()}")
    print(f"prompts: {len(conversations)} demo questions, prompt qa-concise, max_tokens {args.max_tokens}, greedy")
    print(
        f"batched (batch {args.batch_size}): {batched_tokens} tokens in {batched_s:.1f} s = {batched_tps:.1f} tokens/s"
    )
    print(f"one by one:          {single_tokens} tokens in {single_s:.1f} s = {single_tps:.1f} tokens/s")
    print(f"ratio batched / one-by-one: {batched_tps / single_tps:.2f}x")
    print(f"identical outputs: {same}/{len(conversations)}")


if __name__ == "__main__":
    main()
