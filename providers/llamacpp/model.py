"""One loaded GGUF model: weights, vocabulary, tokenizer and the lock every context shares.

A :class:`LlamaModel` is loaded once and may back several contexts (the policy's and the
scorer's); every call into llama.cpp for any of them runs in a worker thread while holding
:attr:`LlamaModel.lock`, so the event loop never blocks and one model never runs two decodes at
once.
"""

from __future__ import annotations

import ctypes
import logging
import os
from pathlib import Path

import anyio

from providers.llamacpp._lib import ensure_backend, llama_cpp, set_native_logging
from providers.llamacpp.repack import Repack, choose_repack, log_choice

__all__ = ("LlamaModel",)

logger = logging.getLogger(__name__)


class LlamaModel:
    """A GGUF model loaded into llama.cpp, shared by the contexts built on it.

    Args:
        model_path: Path of the ``.gguf`` file.
        n_gpu_layers: Layers to offload to the GPU (``-1``: all, ``0``: CPU only). Ignored by a
            CPU-only build of llama.cpp. On a laptop GPU that cannot hold the whole model, lower
            it until the memory check passes.
        verbose: Print llama.cpp's own log lines.
        repack: Let llama.cpp repack the CPU weights (``"on"``), keep them as stored
            (``"off"``), or decide from the build (``"auto"``: repack unless the build uses AMX,
            whose matrix product crashes on Q4_K weights; see :mod:`providers.llamacpp.repack`).
            ``None``: the ``REBASE_AGENT_LLAMA_REPACK`` environment variable, else ``"auto"``.
            The decision is logged (logger ``providers.llamacpp.repack``, INFO) and kept in
            :attr:`repack`.

    Raises:
        FileNotFoundError: No file at ``model_path``.
        ValueError: ``repack`` is not ``auto``, ``on`` or ``off``.
        RuntimeError: llama.cpp could not load the file.
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        *,
        n_gpu_layers: int = -1,
        verbose: bool = False,
        repack: Repack | None = None,
    ) -> None:
        path = Path(model_path)
        if not path.is_file():
            raise FileNotFoundError(f"no GGUF model at {path}")
        set_native_logging(verbose)
        ensure_backend()
        choice = choose_repack(repack)
        log_choice(choice, path.name)
        params = llama_cpp.llama_model_default_params()
        params.n_gpu_layers = 0x7FFFFFFF if n_gpu_layers < 0 else n_gpu_layers
        params.use_extra_bufts = choice.use_extra_bufts
        model = llama_cpp.llama_model_load_from_file(str(path).encode("utf-8"), params)
        if not model:
            raise RuntimeError(f"llama.cpp could not load the model at {path}")
        self.path = path
        self.n_gpu_layers = n_gpu_layers
        self.repack = choice
        """How the CPU weights were loaded, and why."""
        self.ptr = model
        self.vocab = llama_cpp.llama_model_get_vocab(model)
        self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(self.vocab))
        self.n_ctx_train = int(llama_cpp.llama_model_n_ctx_train(model))
        self.bos = int(llama_cpp.llama_vocab_bos(self.vocab))
        self.eos = int(llama_cpp.llama_vocab_eos(self.vocab))
        self.lock = anyio.Lock()
        """Held around every llama.cpp call on this model or its contexts."""
        self._piece_buf = ctypes.create_string_buffer(256)
        self._closed = False
        self.contexts = 0
        """Open contexts (engines) built on this model."""
        self.close_with_contexts = False
        """Free the weights when the last context closes (set for models loaded on a caller's
        behalf, e.g. by a provider given a path)."""

    @classmethod
    def share_or_load(
        cls,
        model: LlamaModel | str | os.PathLike[str],
        *,
        n_gpu_layers: int,
        verbose: bool,
        repack: Repack | None = None,
    ) -> LlamaModel:
        """``model`` itself if it is loaded; else load it, to be freed with its last context."""
        if isinstance(model, LlamaModel):
            return model
        loaded = cls(model, n_gpu_layers=n_gpu_layers, verbose=verbose, repack=repack)
        loaded.close_with_contexts = True
        return loaded

    # -- metadata ---------------------------------------------------------------------------

    def metadata(self, key: str) -> str | None:
        """Return a GGUF metadata value as a string, or ``None`` when the key is absent."""
        size = 1024
        while True:
            buf = ctypes.create_string_buffer(size)
            n = llama_cpp.llama_model_meta_val_str(self.ptr, key.encode("utf-8"), buf, size)
            if n < 0:
                return None
            if n < size:
                return buf.value.decode("utf-8", errors="replace")
            size = n + 1

    @property
    def chat_template(self) -> str | None:
        """The Jinja chat template in the GGUF metadata, or ``None`` (a base model)."""
        raw = llama_cpp.llama_model_chat_template(self.ptr, None)
        return raw.decode("utf-8") if raw else None

    @property
    def name(self) -> str:
        """The model's ``general.name``, or its file name."""
        return self.metadata("general.name") or self.path.name

    # -- tokens -----------------------------------------------------------------------------

    def tokenize(self, text: str, *, add_bos: bool = True, special: bool = True) -> list[int]:
        """Tokenize ``text``; ``add_bos`` adds the model's BOS where the model wants one.

        ``special=True`` parses special-token text (``<start_of_turn>``) as special tokens, as a
        rendered chat template needs.
        """
        data = text.encode("utf-8")
        n_max = len(data) + 8
        buf = (llama_cpp.llama_token * n_max)()
        n = llama_cpp.llama_tokenize(self.vocab, data, len(data), buf, n_max, add_bos, special)
        if n < 0:
            n_max = -n
            buf = (llama_cpp.llama_token * n_max)()
            n = llama_cpp.llama_tokenize(self.vocab, data, len(data), buf, n_max, add_bos, special)
        return list(buf[:n])

    def piece(self, token: int, *, special: bool = False) -> bytes:
        """The bytes one token stands for (control tokens give ``b""`` unless ``special``)."""
        buf = self._piece_buf
        n = llama_cpp.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, special)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, special)
        return buf.raw[:n]

    def token_text(self, token: int) -> str:
        """Text of a token, special tokens included (``<bos>``); ``""`` for a negative id."""
        if token < 0:
            return ""
        return self.piece(token, special=True).decode("utf-8", errors="replace")

    def is_eog(self, token: int) -> bool:
        """True for end-of-generation tokens (EOS, EOT, ...)."""
        return bool(llama_cpp.llama_vocab_is_eog(self.vocab, token))

    def single_token_ids(self, variants: list[str]) -> list[int]:
        """Token ids of the variants that are exactly one token in this vocabulary."""
        ids: list[int] = []
        for text in variants:
            toks = self.tokenize(text, add_bos=False, special=False)
            if len(toks) == 1 and toks[0] not in ids:
                ids.append(toks[0])
        return ids

    # -- lifetime ---------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once the weights are freed."""
        return self._closed

    def context_closed(self) -> None:
        """Called by each context as it closes."""
        self.contexts -= 1
        if self.contexts <= 0 and self.close_with_contexts:
            self.close()

    def close(self) -> None:
        """Free the weights. Close every context built on the model first."""
        if not self._closed:
            self._closed = True
            llama_cpp.llama_model_free(self.ptr)

    def __repr__(self) -> str:
        return f"LlamaModel({str(self.path)!r}, n_gpu_layers={self.n_gpu_layers})"
