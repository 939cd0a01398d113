"""Problems to evaluate on: GSM8K and MATH500 JSONL, any JSONL with a field mapping, or a
Hugging Face dataset.

Every reader checks every row before a single request is sent: a row that is not JSON, not an
object, or lacks a field stops the load with a :class:`DatasetError` naming the file and the line,
unless ``skip_invalid`` is set, in which case the row is skipped and counted.

Example::

    data = load_dataset(DatasetSpec(source="../shared/data/gsm8k_test.jsonl", limit=10))
    print(data.problems[0].question, data.problems[0].gold_answer)
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from rebase_agent.answers import extract_boxed

__all__ = (
    "FORMATS",
    "DatasetError",
    "DatasetFormat",
    "DatasetSpec",
    "FieldMapping",
    "LoadedDataset",
    "Problem",
    "SkippedRow",
    "load_dataset",
    "read_jsonl",
)

DatasetFormat = Literal["gsm8k", "math500", "jsonl"]
GoldFormat = Literal["plain", "gsm8k", "boxed"]


class DatasetError(ValueError):
    """A dataset that cannot be read: names the file and, where it applies, the line."""


class Problem(BaseModel):
    """One problem: an id unique in its dataset, the question and the gold final answer."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(min_length=1)
    question: str = Field(min_length=1)
    gold_answer: str = Field(min_length=1)
    meta: dict[str, str | int | float | bool | None] = Field(default_factory=dict)
    """Other scalar fields of the row (MATH500's ``subject`` and ``level``, for example)."""


class FieldMapping(BaseModel):
    """Which fields of a row hold the question, the answer and (optionally) the id."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    question: str = "question"
    answer: str = "answer"
    id: str | None = None
    """Field holding a unique id; ``None`` numbers rows from 0 in file order."""
    gold: GoldFormat = "plain"
    """How the gold answer is read from the answer field: as is, after GSM8K's ``####``, or
    from the last ``\\boxed{}``."""


FORMATS: dict[str, FieldMapping] = {
    "gsm8k": FieldMapping(question="question", answer="answer", gold="gsm8k"),
    "math500": FieldMapping(question="problem", answer="answer", id="unique_id"),
    "jsonl": FieldMapping(),
}
"""Built-in field mappings. MATH500 rows without ``unique_id`` are numbered."""


class DatasetSpec(BaseModel):
    """Where the problems come from and how to read them.

    ``source`` is a JSONL path or ``hf:NAME`` for a Hugging Face dataset. ``format`` picks a
    built-in mapping (guessed from the file name when ``None``: ``gsm8k``, ``math``, else
    ``jsonl``); ``fields`` overrides it field by field.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str = Field(min_length=1)
    format: DatasetFormat | None = None
    fields: dict[str, str] = Field(default_factory=dict)
    """Overrides of :class:`FieldMapping` (``question``, ``answer``, ``id``, ``gold``)."""
    split: str = "test"
    """Hugging Face split."""
    hf_config: str | None = None
    """Hugging Face configuration name (GSM8K's ``main``, for example)."""
    limit: int | None = Field(None, ge=1)
    """Keep only the first ``limit`` problems."""
    skip_invalid: bool = False
    """Skip malformed rows (counted) instead of stopping."""

    def name(self) -> str:
        """A short name for the dataset: the file stem or the Hugging Face name."""
        if self.source.startswith("hf:"):
            return self.source[3:]
        return Path(self.source).stem

    def mapping(self) -> FieldMapping:
        """The field mapping: the format's, with ``fields`` applied."""
        fmt = self.format or _guess_format(self.source)
        base = FORMATS[fmt].model_dump()
        unknown = set(self.fields) - set(base)
        if unknown:
            raise DatasetError(
                f"unknown field mapping keys {sorted(unknown)}; known: {sorted(base)}"
            )
        return FieldMapping.model_validate(base | self.fields)


class SkippedRow(BaseModel):
    """A malformed row that was skipped."""

    line: int
    reason: str


class LoadedDataset(BaseModel):
    """The problems read, and the rows skipped (only with ``skip_invalid``)."""

    name: str
    problems: list[Problem]
    skipped: list[SkippedRow] = Field(default_factory=list)


def _guess_format(source: str) -> DatasetFormat:
    stem = Path(source).name.lower()
    if "gsm8k" in stem:
        return "gsm8k"
    if "math" in stem:
        return "math500"
    return "jsonl"


def _gold(raw: str, how: GoldFormat) -> str | None:
    if how == "gsm8k":
        _, sep, tail = raw.rpartition("####")
        return tail.strip().replace(",", "") if sep else None
    if how == "boxed":
        return extract_boxed(raw)
    return raw.strip()


def _problem(row: Any, index: int, mapping: FieldMapping) -> Problem:
    """One problem from a parsed row; raises ``ValueError`` naming what is wrong."""
    if not isinstance(row, Mapping):
        raise ValueError(f"expected a JSON object, got {type(row).__name__}")
    missing = [f for f in (mapping.question, mapping.answer) if f not in row]
    if missing:
        raise ValueError(f"missing field(s) {missing}")
    question, answer = row[mapping.question], row[mapping.answer]
    if not isinstance(question, str) or not question.strip():
        raise ValueError(f"field {mapping.question!r} must be a non-empty string")
    if isinstance(answer, bool) or not isinstance(answer, str | int | float):
        raise ValueError(f"field {mapping.answer!r} must be a string or a number")
    gold = _gold(str(answer), mapping.gold)
    if not gold:
        raise ValueError(f"no gold answer in field {mapping.answer!r} ({mapping.gold} format)")
    ident = row.get(mapping.id) if mapping.id is not None else None
    ident = str(index) if ident is None else str(ident)
    skip = {mapping.question, mapping.answer, mapping.id}
    meta = {
        k: v
        for k, v in row.items()
        if k not in skip
        and (v is None or isinstance(v, str | int | float | bool))
        and not (isinstance(v, str) and len(v) > 200)
    }
    return Problem(id=ident, question=question, gold_answer=gold, meta=meta)


def _collect(
    rows: Iterable[tuple[int, Any]], mapping: FieldMapping, spec: DatasetSpec, where: str
) -> LoadedDataset:
    problems: list[Problem] = []
    skipped: list[SkippedRow] = []
    seen: set[str] = set()
    for index, (line, row) in enumerate(rows):
        try:
            if isinstance(row, _BadJson):
                raise ValueError(f"bad JSON: {row.message}")
            problem = _problem(row, index, mapping)
            if problem.id in seen:
                raise ValueError(f"duplicate id {problem.id!r}")
        except ValueError as exc:
            if not spec.skip_invalid:
                raise DatasetError(f"{where}:{line}: {exc}") from None
            skipped.append(SkippedRow(line=line, reason=str(exc)))
            continue
        seen.add(problem.id)
        problems.append(problem)
    if spec.limit is not None:
        problems = problems[: spec.limit]
    if not problems:
        raise DatasetError(f"{where}: no problems")
    return LoadedDataset(name=spec.name(), problems=problems, skipped=skipped)


class _BadJson:
    def __init__(self, message: str) -> None:
        self.message = message


def read_jsonl(path: str | Path) -> list[tuple[int, Any]]:
    """Every non-blank line of a JSONL file as ``(line number, parsed value)``; a line that is
    not JSON becomes a marker that the readers report with its line number."""
    rows: list[tuple[int, Any]] = []
    try:
        with open(path, encoding="utf-8") as fh:
            for number, text in enumerate(fh, start=1):
                if not text.strip():
                    continue
                try:
                    rows.append((number, json.loads(text)))
                except json.JSONDecodeError as exc:
                    rows.append((number, _BadJson(exc.msg)))
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    return rows


def _load_hf(spec: DatasetSpec, mapping: FieldMapping) -> LoadedDataset:
    try:
        import datasets  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        raise DatasetError(
            f"{spec.source}: Hugging Face datasets need the `datasets` package "
            "(pip install datasets) and network access; or pass a JSONL file"
        ) from None
    try:
        data = datasets.load_dataset(spec.name(), spec.hf_config, split=spec.split)
    except Exception as exc:
        raise DatasetError(f"{spec.source}: cannot load: {exc}") from exc
    return _collect(((i + 1, row) for i, row in enumerate(data)), mapping, spec, spec.source)


def load_dataset(spec: DatasetSpec) -> LoadedDataset:
    """Read and check every problem of ``spec``.

    Raises:
        DatasetError: The file cannot be read, or a row is malformed (file and line named),
            unless ``spec.skip_invalid``.
    """
    mapping = spec.mapping()
    if spec.source.startswith("hf:"):
        return _load_hf(spec, mapping)
    return _collect(read_jsonl(spec.source), mapping, spec, spec.source)
