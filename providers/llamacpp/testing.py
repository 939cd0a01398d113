"""A tiny random-weight llama GGUF, for tests of code that runs on the llama.cpp provider.

The llama.cpp counterpart of :mod:`rebase_agent.testing`: a model that loads in milliseconds, so
that a test exercises the real bindings without the real model. It needs the ``gguf`` package
(``pip install gguf``, in the ``eval`` and ``dev`` extras).

:func:`write_tiny_llama` writes a 2-layer, 64-dim llama-architecture model with a real
SentencePiece-style vocabulary (byte fallback, ``▁`` for spaces, a few hundred tokens), so that
llama.cpp tokenizes and detokenizes any text. The weights are random: the output is gibberish, but
it is deterministic and every engine path (prompt evaluation, forking, sampling, stop strings, EOS)
runs exactly as with a real model. The file is about 0.5 MB and loads in well under a second.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ("TINY_VOCAB", "write_tiny_llama")

_N_EMBD = 64
_N_FF = 128
_N_HEAD = 4
_N_HEAD_KV = 2
_N_LAYER = 2

_PRINTABLE = [chr(c) for c in range(33, 127)]
_WORDS = ["the", "an", "is", "of", "to", "and", "step", "answer", "Question", "Answer", "Yes", "No"]


def _vocab() -> tuple[list[str], list[float], list[int]]:
    """Return ``(tokens, scores, types)`` of a SentencePiece vocabulary with byte fallback."""
    tokens = ["<unk>", "<s>", "</s>"]
    types = [2, 3, 3]  # UNKNOWN, CONTROL, CONTROL
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [6] * 256  # BYTE
    pieces = ["\u2581", *_PRINTABLE, *(f"\u2581{c}" for c in _PRINTABLE if c.isalnum())]
    pieces += [f"\u2581{w}" for w in _WORDS if f"\u2581{w}" not in pieces]
    pieces += ["\u2581Ye", "\u2581+", "\u2581-", "Yes", "No", "\n", "\n\n"]
    tokens += pieces
    types += [1] * len(pieces)  # NORMAL
    # Longer pieces win merges: score by length, ties by order.
    scores = [0.0] * 259 + [float(len(p)) - i * 1e-4 for i, p in enumerate(pieces)]
    return tokens, scores, types


TINY_VOCAB: tuple[str, ...] = tuple(_vocab()[0])
"""The tiny model's token strings, by id."""


def write_tiny_llama(
    path: Path,
    *,
    seed: int = 0,
    eos_bias: float = 0.0,
    n_embd: int = _N_EMBD,
    n_ff: int = _N_FF,
    n_head: int = _N_HEAD,
    n_head_kv: int = _N_HEAD_KV,
    n_layer: int = _N_LAYER,
    f16: bool = False,
) -> Path:
    """Write the tiny random llama GGUF to ``path`` and return it.

    Args:
        path: Where to write the ``.gguf`` file.
        seed: Seed of the random weights.
        eos_bias: Pushes the end-of-sequence logit up by about this many units at every position
            (0: EOS is as likely as any token; 30: the model ends at once).
        n_embd, n_ff, n_head, n_head_kv, n_layer: Shape; larger values make a model of real
            size for speed measurements (``benchmarks/cpu_paths.py``).
        f16: Store the matrices as F16 (half the file; what llama.cpp's quantizer reads).
    """
    try:
        import gguf
    except ImportError as exc:
        raise ImportError(
            "write_tiny_llama needs the gguf package: pip install gguf (or rebase-agent[eval])"
        ) from exc

    rng = np.random.default_rng(seed)
    tokens, scores, types = _vocab()
    n_vocab = len(tokens)
    head_dim = n_embd // n_head

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-random-llama")
    writer.add_context_length(4096)
    writer.add_embedding_length(n_embd)
    writer.add_block_count(n_layer)
    writer.add_feed_forward_length(n_ff)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head_kv)
    writer.add_rope_dimension_count(head_dim)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if f16 else gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)

    def rand(*shape: int, scale: float) -> np.ndarray:
        values = (rng.standard_normal(shape) * scale).astype(np.float32)
        return values.astype(np.float16) if f16 and len(shape) == 2 else values

    embd = rand(n_vocab, n_embd, scale=1.0)
    # Dimension 0 carries a constant offset that only the EOS row of the output reads.
    embd[:, 0] = 4.0
    out = rand(n_vocab, n_embd, scale=1.0)
    out[:, 0] = 0.0
    out[2, 0] = eos_bias / 4.0
    writer.add_tensor("token_embd.weight", embd)
    writer.add_tensor("output_norm.weight", np.ones(n_embd, dtype=np.float32))
    writer.add_tensor("output.weight", out)
    kv_dim = n_head_kv * head_dim
    for i in range(n_layer):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(n_embd, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.attn_q.weight", rand(n_embd, n_embd, scale=0.3))
        writer.add_tensor(f"blk.{i}.attn_k.weight", rand(kv_dim, n_embd, scale=0.3))
        writer.add_tensor(f"blk.{i}.attn_v.weight", rand(kv_dim, n_embd, scale=0.3))
        writer.add_tensor(f"blk.{i}.attn_output.weight", rand(n_embd, n_embd, scale=0.1))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(n_embd, dtype=np.float32))
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", rand(n_ff, n_embd, scale=0.2))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", rand(n_ff, n_embd, scale=0.2))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", rand(n_embd, n_ff, scale=0.1))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
