"""llama-cpp-python's OpenAI-compatible server, with this project's CPU weight decision.

``python -m providers.llamacpp.server --model M.gguf --port 8000 ...`` takes exactly the
arguments of ``python -m llama_cpp.server`` and runs it, except that every model it loads has
its CPU weights placed as :func:`~providers.llamacpp.repack.choose_repack` decides: on a
llama.cpp build with AMX the weights stay as stored, so the first request does not crash
(ggml-org/llama.cpp#20824). ``REBASE_AGENT_LLAMA_REPACK=on|off`` forces either way.
"""

from __future__ import annotations

import logging

from providers.llamacpp.repack import choose_repack, default_params_with, log_choice

__all__ = ("main",)


def main() -> None:
    """Run ``llama_cpp.server``'s command line with the decision applied to every load."""
    from llama_cpp.server.__main__ import main as server_main

    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    choice = choose_repack()
    log_choice(choice, "every model of this server")
    with default_params_with(choice):
        server_main()  # type: ignore[no-untyped-call]


if __name__ == "__main__":
    main()
