"""Deterministic models for the fake server (:mod:`openai_fake_server`), shared by tests."""

from __future__ import annotations

from tests.providers.openai_fake_server import FakeApp, Flavor

__all__ = ("bad_adder",)


def bad_adder(prefill: bool = True) -> FakeApp:
    """A fake base model that answers the probe and writes ``15 + 27 = 32`` for a new step; after
    a calculator's ``= 42`` it finishes the step and states the answer."""

    def continuation(prompt: str, i: int) -> tuple[str, bool]:
        if prompt.endswith("1, 2, 3, 4, 5, 6, 7,"):
            return (" 8, 9, 10, 11" if prefill else "1, 2, 3, 4"), False
        if prompt.startswith("Count from 1 to 20"):
            return "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12", False
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
        return " Paris is the answer word number" + " x" * i, True

    app = FakeApp(Flavor(stop_style="none"))
    app.continuation = continuation
    return app
