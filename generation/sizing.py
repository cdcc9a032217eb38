"""How many sequences go in one batch: sized from the device's free memory and the prompts, not a fixed number.

Decoding reads every weight once per step whatever the batch, so throughput grows with the batch until the
step turns compute-bound: on a GPU up to a few hundred sequences (shared/notes/gpu.md: batch 256 gave 20x
batch 16 on an H200), and on CPU cores too (bench/prompt_loop.py: the demo's 72 questions in one batch
generate in about half the time of batches of 16). What limits the batch is memory: every sequence of a
batch holds keys and values for the longest prompt plus ``max_new_tokens``, in every layer, and while its
prompt is read, one layer's MLP activations:

    per sequence = 2 (K, V) x layers x kv_heads x head_dim x dtype bytes x (longest prompt + new tokens)
                   + 3 x intermediate x dtype bytes x longest prompt  (gate, up and their product, one layer)
                   + the last position's logits in fp32 (vocab x 4 bytes, x2 for the softmax)

The batch is what fits in ``headroom`` of the free memory (a GPU's, or the host's available memory on a
CPU), at least 1 and at most ``cap``.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_CAP = 256


@dataclass(frozen=True)
class KVShape:
    """What one token costs in the KV cache (and in one layer's MLP while a prompt is read), from a model config."""

    layers: int
    kv_heads: int
    head_dim: int
    dtype_bytes: int
    vocab: int
    intermediate: int = 0

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
            intermediate=int(getattr(config, "intermediate_size", None) or 4 * config.hidden_size),
        )

    def bytes_per_sequence(self, tokens: int, prompt_tokens: int = 0) -> int:
        kv = 2 * self.layers * self.kv_heads * self.head_dim * self.dtype_bytes * tokens
        activations = 3 * self.intermediate * self.dtype_bytes * prompt_tokens
        return kv + activations + 2 * 4 * self.vocab


def fitting_batch_size(
    free_bytes: int,
    shape: KVShape,
    *,
    longest_prompt: int,
    max_new_tokens: int,
    headroom: float = 0.8,
    cap: int = DEFAULT_CAP,
) -> int:
    """The most sequences whose cache and prompt activations fit in ``headroom`` of ``free_bytes`` (1 .. ``cap``)."""
    if not 0.0 < headroom <= 1.0:
        raise ValueError(f"headroom must be in (0, 1], got {headroom}")
    per_sequence = shape.bytes_per_sequence(max(1, longest_prompt + max_new_tokens), max(0, longest_prompt))
    fits = int(headroom * max(0, free_bytes) // per_sequence)
    return max(1, min(cap, fits))


def available_host_memory() -> int:
    """Bytes this process can still use, for sizing a CPU batch: the host's available memory (free plus
    reclaimable caches), or less where a container's memory limit (a pod's, a ``docker run -m``) leaves less:
    /proc/meminfo shows the node's memory, not the limit the kernel kills at."""
    import psutil

    available = int(psutil.virtual_memory().available)
    return min(available, _cgroup_headroom() or available)


def _cgroup_headroom(root: str = "/sys/fs/cgroup") -> int | None:
    """The cgroup's limit minus its usage (cgroup v2, else v1); None without a limit."""
    from pathlib import Path

    for limit_file, usage_file in (
        ("memory.max", "memory.current"),
        ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes"),
    ):
        try:
            limit = (Path(root) / limit_file).read_text().strip()
            usage = int((Path(root) / usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 2**60:  # "max" (v2) or a huge number (v1): no limit
            return max(0, int(limit) - usage)
        return None
    return None
