"""Prompt presets: names, files, and the embedded default's few-shot text kept word for word."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from rebase_agent.presets import PRESETS, Preset, preset_names, resolve_preset


def test_the_few_shot_preset_is_the_embedded_defaults_prompt() -> None:
    templates = pytest.importorskip("providers.llamacpp.templates")
    preset = resolve_preset("few_shot_steps")
    assert preset.completion_format == templates.FEW_SHOT_STEPS_TEMPLATE
    assert preset.kind == "base" and preset.top_k == 40
    assert preset.search_defaults == {"max_depth": 6, "max_step_tokens": 48, "temperature": 0.7}
    rendered = preset.render_prefix("What is 6 * 7?")
    assert rendered.endswith("Question: What is 6 * 7?\nAnswer:\n\n")


def test_chat_preset_has_a_system_prompt_and_no_raw_prompt() -> None:
    preset = resolve_preset("chat_steps")
    assert preset.kind == "chat" and "The answer is N." in (preset.system_prompt or "")
    with pytest.raises(ValueError, match="chat preset 'chat_steps' has no raw prompt"):
        preset.render_prefix("p")


def test_a_template_file_is_a_base_prompt(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_text("Problem: {problem}\nSolution:\n\n{solution}")
    preset = resolve_preset(str(path))
    assert preset.kind == "base" and preset.render_prefix("1+1") == "Problem: 1+1\nSolution:\n\n"
    bad = tmp_path / "bad.txt"
    bad.write_text("no field here")
    with pytest.raises(ValueError, match="needs a '\\{problem\\}' field"):
        resolve_preset(str(bad))
    odd = tmp_path / "odd.txt"
    odd.write_text("{problem} {other}")
    with pytest.raises(ValueError, match="not a format string with only"):
        resolve_preset(str(odd))


def test_an_unknown_name_lists_the_presets() -> None:
    with pytest.raises(ValueError) as info:
        resolve_preset("fewshot")
    assert "'fewshot'" in str(info.value)
    for name in preset_names():
        assert name in str(info.value)
    assert set(PRESETS) == {"few_shot_steps", "plain", "chat_steps"}


def test_a_preset_must_match_its_kind() -> None:
    with pytest.raises(ValidationError, match="needs a prefix"):
        Preset(name="x", kind="base")
    with pytest.raises(ValidationError, match="needs a system_prompt"):
        Preset(name="x", kind="chat")


def test_a_base_preset_prefix_is_checked_as_a_format_template() -> None:
    with pytest.raises(ValidationError, match=r"unknown placeholder \{question\}"):
        Preset(name="x", kind="base", prefix="{problem} {question}")
    literal = Preset(name="x", kind="base", prefix="Reply as {{n}}. {problem}\n")
    assert literal.render_prefix("1+1") == "Reply as {n}. 1+1\n"
