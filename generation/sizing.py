"""How many sequences fit in one GPU batch: sized from free memory and the prompts, not a fixed number.

Decoding is bound by per-step overhead on a GPU, so throughput grows almost linearly with the batch up to a
few hundred sequences (shared/notes/gpu.md: batch 256 gave 20x batch 16 on an H200). What limits the batch is
the KV cache: with a static cache (what the backend uses on a GPU, 2.2x plain ``generate`` there) every
sequence of a batch holds keys and values for the longest prompt plus ``max_new_tokens``, in every layer:

    per sequence = 2 (K, V) x layers x kv_heads x head_dim x dtype bytes x (longest prompt + new tokens)
                   + the last position's logits in fp32 (vocab x 4 bytes, x2 for the softmax)

The batch is what fits in ``headroom`` of the free memory, at least 1 and at most ``cap``.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_CAP = 256
CPU_BATCH = 16  # CPU behaviour is unchanged: more sequences per batch do not pay off on cores


@dataclass(frozen=True)
class KVShape:
    """What one token costs in the KV cache, read from a model config."""

    layers: int
    kv_heads: int
    head_dim: int
    dtype_bytes: int
    vocab: int

    @classmethod
    def of(cls, config, dtype_bytes: int) -> KVShape:
        heads = int(config.num_attention_heads)
        head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // heads)
        return cls(
            layers=int(config.num_hidden_layers),
            kv_heads=int(getattr(config, "num_key_value_heads", None) or heads),
            head_dim=head_dim,
            dtype_bytes=dtype_bytes,
            vocab=int(config.vocab_size),
        )

    def bytes_per_sequence(self, tokens: int) -> int:
        kv = 2 * self.layers * self.kv_heads * self.head_dim * self.dtype_bytes * tokens
        return kv + 2 * 4 * self.vocab


def gpu_batch_size(
    free_bytes: int,
    shape: KVShape,
    *,
    longest_prompt: int,
    max_new_tokens: int,
    headroom: float = 0.8,
    cap: int = DEFAULT_CAP,
) -> int:
    """The most sequences whose cache fits in ``headroom`` of ``free_bytes`` (1 .. ``cap``)."""
    if not 0.0 < headroom <= 1.0:
        raise ValueError(f"headroom must be in (0, 1], got {headroom}")
    per_sequence = shape.bytes_per_sequence(max(1, longest_prompt + max_new_tokens))
    fits = int(headroom * max(0, free_bytes) // per_sequence)
    return max(1, min(cap, fits))
