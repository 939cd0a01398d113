"""How llama.cpp stores a model's CPU weights: repacked (the fast path) or as in the file.

llama.cpp's CPU backend offers *extra* buffer types for weights, in order of preference: on a
build compiled for a CPU with AMX (Intel Sapphire Rapids and later), an ``AMX`` buffer; then
``CPU_REPACK``, which interleaves quantized blocks for faster matrix products. llama.cpp calls
the switch for both ``use_extra_bufts`` (``llama_model_params``) and ``--no-repack``
(llama-server).

The AMX matrix product crashes (SIGSEGV) on the first decode of Q4_K weights such as the bundled
Gemma 3 270M Q4_K_M (ggml-org/llama.cpp#20824, open; dspy dropped its AMX build for the same
crash). pip builds llama-cpp-python with ``-march=native``, so every AMX machine gets that path.
llama.cpp offers no narrower switch that keeps ``CPU_REPACK`` and drops ``AMX``: a
``tensor_buft_overrides`` entry to the CPU buffer type re-selects among the extra types (AMX
first), and one to ``CPU_REPACK`` aborts on any tensor type that buffer cannot repack.

So :func:`choose_repack` decides at load time, from llama.cpp's own system information (not a
list of CPU models): with ``repack="auto"`` the extra buffer types are kept unless the build
reports ``AMX_INT8 = 1``. ``"on"`` and ``"off"`` force either way (``"on"`` on an AMX build
crashes on Q4_K weights until upstream fixes it). A build without AMX (see the README's
``CMAKE_ARGS`` for AMX machines) keeps repacking, on the same CPU.

The environment variable ``REBASE_AGENT_LLAMA_REPACK`` (``auto``, ``on``, ``off``) sets the
default for every load in the process that does not pass ``repack``.

Every load in this project goes through the decision: :class:`~providers.llamacpp.LlamaModel`
sets ``use_extra_bufts`` itself; llama-cpp-python's high-level ``Llama`` (which has no such
argument) is loaded with :func:`load_llama`, and its OpenAI-compatible server is started with
``python -m providers.llamacpp.server`` (the same arguments as ``python -m llama_cpp.server``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, get_args

from providers.llamacpp._lib import llama_cpp

__all__ = (
    "REPACK_ENV",
    "Repack",
    "RepackChoice",
    "choose_repack",
    "default_params_with",
    "load_llama",
    "parse_repack",
    "system_info",
)

logger = logging.getLogger(__name__)

Repack = Literal["auto", "on", "off"]
"""``auto``: repack unless the build uses AMX; ``on``/``off``: force either way."""

REPACK_ENV = "REBASE_AGENT_LLAMA_REPACK"
"""Environment variable with the process-wide default of ``repack``."""

_AMX = re.compile(r"\bAMX_INT8\s*=\s*1\b")


@dataclass(frozen=True)
class RepackChoice:
    """The decision for one model load, and why (the text of its log line)."""

    use_extra_bufts: bool
    """The value given to ``llama_model_params.use_extra_bufts``."""
    requested: Repack
    """What was asked for (after the environment default)."""
    amx: bool
    """This llama.cpp build reports ``AMX_INT8 = 1``."""
    reason: str

    @property
    def path(self) -> str:
        """``"repacked"`` or ``"as stored"``: how the CPU weights are laid out."""
        return "repacked" if self.use_extra_bufts else "as stored"


def system_info() -> str:
    """llama.cpp's system information line (its CPU features, as compiled and detected)."""
    raw: bytes = llama_cpp.llama_print_system_info()
    return raw.decode("utf-8", errors="replace")


def parse_repack(repack: str, *, source: str = "repack") -> Repack:
    """``repack`` if it is ``auto``, ``on`` or ``off``.

    Raises:
        ValueError: It is not; the message names ``source`` and the value.
    """
    if repack not in get_args(Repack):
        raise ValueError(f"{source} must be auto, on or off, got {repack!r}")
    return repack  # type: ignore[return-value]


def _requested(repack: str | None) -> Repack:
    if repack is None:
        from_env = os.environ.get(REPACK_ENV, "auto").strip().lower() or "auto"
        return parse_repack(from_env, source=f"environment variable {REPACK_ENV}")
    return parse_repack(repack)


def choose_repack(repack: str | None = None, *, info: str | None = None) -> RepackChoice:
    """Decide whether llama.cpp may put CPU weights in its extra (repacked, AMX) buffers.

    Args:
        repack: ``"auto"``, ``"on"`` or ``"off"``; ``None`` reads :data:`REPACK_ENV` (default
            ``"auto"``).
        info: llama.cpp's system information (default: :func:`system_info`); for tests.

    Raises:
        ValueError: ``repack`` (or the environment variable) is not one of the three, named.
    """
    requested = _requested(repack)
    amx = bool(_AMX.search(system_info() if info is None else info))
    if requested == "on":
        reason = "repack=on: weights repacked" + (
            " (this build has AMX: Q4_K weights crash on decode, ggml-org/llama.cpp#20824)"
            if amx
            else ""
        )
        return RepackChoice(True, requested, amx, reason)
    if requested == "off":
        return RepackChoice(False, requested, amx, "repack=off: weights as stored in the file")
    if amx:
        reason = (
            "this llama.cpp build reports AMX_INT8 = 1, whose matrix product crashes on Q4_K "
            "weights (ggml-org/llama.cpp#20824): weights kept as stored (use_extra_bufts=False); "
            "a build without AMX keeps repacking (README), repack=on forces it"
        )
        return RepackChoice(False, requested, amx, reason)
    return RepackChoice(True, requested, amx, "no AMX in this llama.cpp build: weights repacked")


def log_choice(choice: RepackChoice, what: str) -> None:
    """Log the decision for loading ``what`` (a path or a name)."""
    logger.info("llama.cpp CPU weights of %s: %s", what, choice.reason)


_patch_lock = threading.Lock()


@contextlib.contextmanager
def default_params_with(choice: RepackChoice) -> Iterator[None]:
    """Within the block, ``llama_model_default_params()`` as llama-cpp-python's high-level code
    calls it returns ``use_extra_bufts`` as ``choice`` says.

    ``llama_cpp.Llama`` builds its model parameters from that function and offers no argument
    for the field; this is the one place the project reaches into it. Blocks of different
    threads run one at a time.
    """
    from llama_cpp import llama_cpp as bindings  # the module ``llama_cpp.Llama`` calls

    with _patch_lock:
        original: Callable[[], Any] = bindings.llama_model_default_params

        def patched() -> Any:
            params = original()
            params.use_extra_bufts = choice.use_extra_bufts
            return params

        bindings.llama_model_default_params = patched
        try:
            yield
        finally:
            bindings.llama_model_default_params = original


def load_llama(model_path: str, *, repack: Repack | None = None, **kwargs: Any) -> Any:
    """``llama_cpp.Llama(model_path, **kwargs)``, its CPU weights loaded as :func:`choose_repack`
    decides (and logged).

    Raises:
        ValueError: ``repack`` is not ``auto``, ``on`` or ``off``.
    """
    choice = choose_repack(repack)
    log_choice(choice, os.path.basename(model_path))
    with default_params_with(choice):
        return llama_cpp.Llama(model_path, **kwargs)
