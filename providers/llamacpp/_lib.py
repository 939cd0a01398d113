"""The guarded import of llama-cpp-python, shared by every module of this package.

Only :mod:`llama_cpp`'s low-level ctypes API is used (``llama_get_memory`` and the
``llama_memory_*`` functions of llama-cpp-python ``>=0.3.16,<0.4``).
"""

from __future__ import annotations

import logging
import threading

try:
    import llama_cpp
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "The llama.cpp provider needs llama-cpp-python: pip install 'rebase-agent[llama]'"
    ) from exc

if not hasattr(llama_cpp, "llama_get_memory"):  # pragma: no cover - old installs only
    raise ImportError(
        f"llama-cpp-python {llama_cpp.__version__} is too old for the llama.cpp provider "
        "(needs >=0.3.16,<0.4): pip install -U 'rebase-agent[llama]'"
    )

__all__ = ("ensure_backend", "init_ggml", "llama_cpp", "set_native_logging")

_ggml_lock = threading.Lock()
_ggml_ready = False


def set_native_logging(verbose: bool) -> None:
    """Show llama.cpp's own log lines (``verbose=True``) or none.

    llama-cpp-python's log callback maps llama.cpp's levels with an older enum, so its
    ``ERROR`` threshold still prints llama.cpp's warnings (model-loading chatter such as
    "control-looking token") and hides its errors; failures reach us as return codes and
    exceptions anyway, so quiet means quiet.
    """
    logging.getLogger("llama-cpp-python").setLevel(
        logging.DEBUG if verbose else logging.CRITICAL + 1
    )


def init_ggml() -> None:
    """Initialise ggml, llama.cpp's tensor library (``llama_backend_init``), once per process
    (thread-safe, idempotent). Call it before loading a model or estimating its memory."""
    global _ggml_ready
    with _ggml_lock:
        if not _ggml_ready:
            llama_cpp.llama_backend_init()
            _ggml_ready = True


ensure_backend = init_ggml
"""The former name of :func:`init_ggml`, until ``model.py`` and ``memory.py`` call it by its
new name ("backend" means a provider-and-scorer factory, ``--backend``)."""
