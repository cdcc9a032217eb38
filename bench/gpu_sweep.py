"""The transformers backend's automatic batch against the best fixed batch, on whatever device torch sees.

    python bench/gpu_sweep.py [--shapes 135m,1.7b] [--batches 16,32,64,128,256,512] [--prompts 512] [--max-tokens 128]
    python bench/gpu_sweep.py --shapes tiny --batches 2,4 --prompts 8 --max-tokens 8   # a CPU check of the script

Prints, per model shape, tokens/s of champion's TransformersGenerator with batch_size=0 (each batch sized from
free memory, static KV cache on a GPU: generation/sizing.py) and with each fixed batch, and the ratio of the
automatic batch to the best fixed one (goal >= 0.9). The models are SmolLM2's shapes with random weights in
bf16 (throughput does not depend on the weights' values; EOS is suppressed so every answer has max-tokens
tokens) and the packaged SmolLM2 tokenizer, so the script needs nothing from a model hub and fits in one
device call. With TRL and datasets importable it also times a LoRA fine-tune in bf16 (steps/s, peak memory).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

SHAPES = {  # SmolLM2's configs (hidden, layers, heads, kv heads, intermediate); tiny: a CPU check of the script
    "tiny": (64, 2, 4, 2, 128),
    "135m": (576, 30, 9, 3, 1536),
    "1.7b": (2048, 24, 32, 32, 8192),
}


def build_model(shape: str, tokenizer_dir: Path, out: Path) -> Path:
    """A random-weight model of ``shape`` with the real tokenizer and chat template, saved where the backend loads it."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    hidden, layers, heads, kv_heads, intermediate = SHAPES[shape]
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = LlamaConfig(
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        intermediate_size=intermediate,
        vocab_size=len(tokenizer),
        max_position_embeddings=8192,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    folder = out / shape
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def tokens_per_second(generator, conversations, decoding) -> float:
    # Warm-up, untimed: one full pass, so every batch shape's kernels and static-cache graphs are built before
    # the timed pass (the first setting would otherwise pay for compilations the later ones reuse).
    generator.generate(conversations, decoding)
    started = time.perf_counter()
    generations = generator.generate(conversations, decoding)
    return sum(g.completion_tokens for g in generations) / (time.perf_counter() - started)


def fine_tune_figures(folder: Path, steps: int = 20) -> dict:
    """A LoRA adapter trained by TRL's SFTTrainer in bf16 on synthetic chat examples: steps/s and peak memory."""
    try:
        import datasets
        import torch
        from peft import LoraConfig
        from trl import SFTConfig, SFTTrainer
    except ImportError as missing:
        return {"skipped": f"{missing.name} is not installed here"}
    examples = [
        {
            "messages": [
                {"role": "user", "content": f"What is {i} plus {i}?"},
                {"role": "assistant", "content": str(2 * i)},
            ]
        }
        for i in range(steps * 8)
    ]
    trainer = SFTTrainer(
        model=str(folder),
        train_dataset=datasets.Dataset.from_list(examples),
        peft_config=LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM"),
        args=SFTConfig(
            output_dir=tempfile.mkdtemp(),
            max_steps=steps,
            per_device_train_batch_size=8,
            bf16=torch.cuda.is_available(),
            gradient_checkpointing=True,
            report_to=[],
            logging_steps=steps,
            save_strategy="no",
        ),
    )
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()  # the training's own peak, not the generation sweep's
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else float("nan")
    return {"steps_per_second": round(steps / seconds, 2), "peak_gib": round(peak, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", default="135m,1.7b")
    parser.add_argument("--batches", default="16,32,64,128,256,512")
    parser.add_argument("--prompts", type=int, default=512)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--tokenizer", default="", help="a folder with SmolLM2's tokenizer (default: the packaged one)")
    parser.add_argument("--no-fine-tune", action="store_true")
    args = parser.parse_args()

    import torch

    from generation.transformers_backend import TransformersGenerator
    from prompts import Decoding

    out = Path(tempfile.mkdtemp(prefix="gpu-sweep-"))
    tokenizer_dir = Path(args.tokenizer) if args.tokenizer else packaged_tokenizer(out)
    questions = [
        f"Question {i}: in a few sentences, what is the history of the number {i}?" for i in range(args.prompts)
    ]
    conversations = [[{"role": "user", "content": q}] for q in questions]
    decoding = Decoding(max_tokens=args.max_tokens)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    results: dict = {"device": device, "torch": torch.__version__, "shapes": {}}
    for shape in args.shapes.split(","):
        folder = build_model(shape, tokenizer_dir, out)
        generator = TransformersGenerator(str(folder), batch_size=0)  # bf16 on a GPU
        generator.model.generation_config.eos_token_id = None  # every answer runs to max-tokens: equal work per batch
        generator.model.generation_config.suppress_tokens = [generator.tokenizer.eos_token_id]
        automatic = tokens_per_second(generator, conversations, decoding)
        fixed = {}
        for batch in (int(b) for b in args.batches.split(",")):
            generator.batch_size = batch  # a cap: the batch itself where free memory allows it
            fixed[batch] = tokens_per_second(generator, conversations, decoding)
        best = max(fixed, key=fixed.__getitem__)
        entry = {
            "automatic_tokens_per_s": round(automatic, 1),
            "fixed_tokens_per_s": {b: round(v, 1) for b, v in fixed.items()},
            "best_fixed_batch": best,
            "automatic_over_best": round(automatic / fixed[best], 3),
        }
        results["shapes"][shape] = entry
        print(
            f"{shape}: automatic {automatic:.0f} tok/s, best fixed batch {best} {fixed[best]:.0f} tok/s, ratio {automatic / fixed[best]:.2f}",
            flush=True,
        )
        del generator  # its weights and cache leave the GPU before the fine-tune measures its own peak
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        if not args.no_fine_tune:
            entry["lora_fine_tune_bf16"] = fine_tune_figures(folder)
    print(json.dumps(results, indent=2))


def packaged_tokenizer(out: Path) -> Path:
    """SmolLM2's tokenizer from the packaged demo model (converted once, weights discarded)."""
    from champion.weights import fetch_weights

    return Path(fetch_weights("smollm2", out / "smollm2").path)


if __name__ == "__main__":
    main()
