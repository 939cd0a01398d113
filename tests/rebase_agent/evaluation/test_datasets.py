from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from rebase_agent.evaluation.datasets import DatasetError, DatasetSpec, load_dataset


def test_gsm8k_reads_the_number_after_hashes(gsm8k_path: Path) -> None:
    data = load_dataset(DatasetSpec(source=str(gsm8k_path), limit=3))
    assert data.name == "gsm8k_test"
    assert [p.id for p in data.problems] == ["0", "1", "2"]
    assert data.problems[0].gold_answer == "18"
    assert data.problems[0].question.startswith("Janet")


def test_math500_reads_latex_answers_and_metadata(math500_path: Path) -> None:
    data = load_dataset(DatasetSpec(source=str(math500_path), limit=2))
    first = data.problems[0]
    assert first.gold_answer == r"\left( 3, \frac{\pi}{2} \right)"
    assert first.meta == {"subject": "Precalculus", "level": 2}
    assert "solution" not in first.meta


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_any_jsonl_with_a_field_mapping(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "mine.jsonl",
        [
            json.dumps({"uid": "a", "q": "1+1?", "sol": r"so \boxed{2}"}),
            json.dumps({"uid": "b", "q": "2+2?", "sol": r"\boxed{4}", "extra": 1}),
        ],
    )
    spec = DatasetSpec(
        source=str(path), fields={"question": "q", "answer": "sol", "id": "uid", "gold": "boxed"}
    )
    data = load_dataset(spec)
    assert [(p.id, p.question, p.gold_answer) for p in data.problems] == [
        ("a", "1+1?", "2"),
        ("b", "2+2?", "4"),
    ]
    assert data.problems[1].meta == {"extra": 1}


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ('{"question": "q"}', "missing field(s) ['answer']"),
        ("{not json", "bad JSON"),
        ('["a list"]', "expected a JSON object"),
        ('{"question": "", "answer": "1"}', "must be a non-empty string"),
        ('{"question": "dup", "answer": "1", "id": "x"}', "duplicate id 'x'"),
    ],
)
def test_a_malformed_row_names_file_and_line(tmp_path: Path, bad: str, message: str) -> None:
    good = [
        json.dumps({"question": f"q{i}", "answer": str(i), "id": "x" if i == 1 else str(i)})
        for i in range(1, 3)
    ]
    path = _write(tmp_path / "data.jsonl", [*good, "", bad])
    spec = DatasetSpec(source=str(path), format="jsonl", fields={"id": "id"})
    with pytest.raises(DatasetError) as info:
        load_dataset(spec)
    assert f"{path}:4: " in str(info.value) and message in str(info.value)
    skipping = load_dataset(spec.model_copy(update={"skip_invalid": True}))
    assert len(skipping.problems) == 2
    assert [s.line for s in skipping.skipped] == [4]


def test_missing_file_and_empty_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="cannot read"):
        load_dataset(DatasetSpec(source=str(tmp_path / "nope.jsonl")))
    empty = _write(tmp_path / "empty.jsonl", [""])
    with pytest.raises(DatasetError, match="no problems"):
        load_dataset(DatasetSpec(source=str(empty)))


def test_huggingface_without_the_package_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(DatasetError, match="pip install datasets"):
        load_dataset(DatasetSpec(source="hf:openai/gsm8k", hf_config="main"))


def test_unknown_mapping_key() -> None:
    with pytest.raises(DatasetError, match="unknown field mapping"):
        DatasetSpec(source="x.jsonl", fields={"prompt": "q"}).mapping()
