from __future__ import annotations

import types

import rebase_agent.evaluation as evaluation


def test_evaluation_all_lists_exactly_its_public_names() -> None:
    public = {
        name
        for name, value in vars(evaluation).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert set(evaluation.__all__) == public
    assert list(evaluation.__all__) == sorted(evaluation.__all__)
