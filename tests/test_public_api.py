from __future__ import annotations

import types

import rebase_agent
import rebase_agent.testing


def test_all_lists_exactly_the_public_names() -> None:
    public = {
        name
        for name, value in vars(rebase_agent).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert set(rebase_agent.__all__) - {"__version__"} == public
    assert list(rebase_agent.__all__) == sorted(rebase_agent.__all__)


def test_protocols_accept_the_testing_doubles() -> None:
    assert isinstance(rebase_agent.testing.ScriptedProvider(), rebase_agent.Provider)
    assert isinstance(rebase_agent.testing.ScriptedScorer(), rebase_agent.Scorer)
    assert not isinstance(object(), rebase_agent.Provider)


def test_core_never_imports_a_provider() -> None:
    import pathlib

    core = pathlib.Path(rebase_agent.__file__).parent
    for path in core.rglob("*.py"):
        text = path.read_text()
        assert "import providers" not in text and "from providers" not in text, path
        assert "llama_cpp" not in text and "import openai" not in text, path
