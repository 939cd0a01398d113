"""Deterministic models for the fake server (:mod:`fake_server`), shared by tests."""

from __future__ import annotations

from tests.providers.openai_compat.fake_server import FakeApp, Flavor

__all__ = ("bad_adder", "probe_reply", "step_writer")


def probe_reply(prompt: str, i: int, *, prefill: bool) -> tuple[str, bool] | None:
    """What a fake base model answers to the probe's own prompts (continuing a count in a
    prefilled assistant message, or restarting it without prefill; counting past a stop
    string), or ``None`` for any other prompt."""
    if prompt.endswith("1, 2, 3, 4, 5, 6, 7,"):
        return (" 8, 9, 10, 11" if prefill else "1, 2, 3, 4"), False
    if prompt.startswith("Count from 1 to 20"):
        return "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12", False
    return None


_FILLER = " Paris is the answer word number"


def step_writer(prefill: bool = True) -> FakeApp:
    """A fake model that writes a step then a blank line, counts on, and says Yes."""

    def continuation(prompt: str, i: int) -> tuple[str, bool]:
        probed = probe_reply(prompt, i, prefill=prefill)
        if probed is not None:
            return probed
        if prompt.endswith("Step 2:"):
            return " 4 + 2 = 6." + " more" * i + "\n\nThe answer is 6.", True
        if "Step 1:" in prompt:  # a search's step: short, then the answer
            return " 6 * 7 = 42.\n\nThe answer is 42.", True
        return _FILLER + " x" * i, True

    app = FakeApp(Flavor())
    app.continuation = continuation
    return app


def bad_adder(prefill: bool = True) -> FakeApp:
    """A fake base model that answers the probe and writes ``15 + 27 = 32`` for a new step; after
    a calculator's ``= 42`` it finishes the step and states the answer."""

    def continuation(prompt: str, i: int) -> tuple[str, bool]:
        probed = probe_reply(prompt, i, prefill=prefill)
        if probed is not None:
            return probed
        if prompt.endswith("Step 2:"):
            return " 4 + 2 = 6.\n\nThe answer is 6.", True
        if prompt.endswith("= 42"):
            return ".\n\nThe answer is 42.", True
        if prompt.endswith("= 42.\n\n"):
            return "The answer is 42.", True
        if prompt.endswith("What is 15 + 27?\nAnswer:\n\n"):
            return "Step 1: 15 + 27 = 32.\n\nThe answer is 32.", True
        if "What is 15 + 27?" in prompt:  # a chat model's turn
            return "Step 1: 15 + 27 = 32.", True
        return _FILLER + " x" * i, True

    app = FakeApp(Flavor(stop_style="none"))
    app.continuation = continuation
    return app
