"""The results file: one JSON row per finished search, appended, flushed and fsynced at once.

A run killed at any moment leaves at most one partial last line. :class:`ResultsWriter` cuts it
off when it reopens the file, reads the rows already there and tells the runner which searches
are done, so rerunning the same command redoes nothing finished and never duplicates or loses a
row.
"""

from __future__ import annotations

import gzip
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO, Literal

import anyio
import anyio.to_thread
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rebase_agent.config import Aggregation
from rebase_agent.evaluation.grading import Grade
from rebase_agent.result import SearchResult

__all__ = (
    "AGGREGATIONS",
    "BudgetOutcome",
    "EvalRow",
    "ResultsError",
    "ResultsWriter",
    "VoteOutcome",
    "read_rows",
)

logger = logging.getLogger(__name__)

AGGREGATIONS: tuple[Aggregation, ...] = ("majority", "weighted_majority", "best_of_n")


class ResultsError(ValueError):
    """A results file that cannot be used: names the file and, where it applies, the line."""


class VoteOutcome(BaseModel):
    """The answer one aggregation picked, and its grade."""

    answer: str | None
    correct: bool


class BudgetOutcome(BaseModel):
    """What a search answers at one budget (its own, or a smaller one by sub-sampling)."""

    budget: int
    subsampled: bool = False
    """Read from the first ``budget`` independent paths of a larger sampling search."""
    finished: int
    """Finished solutions that voted (with or without an answer)."""
    prompt_tokens: int
    """Prompt tokens as the provider reported them (what its cache did not already hold)."""
    completion_tokens: int
    """Generated tokens: the paper's compute basis."""
    scorer_tokens: int
    """Scorer prompt and completion tokens, where the scorer reports them."""
    requests: int | None = None
    """Provider requests that returned steps, read from the tree, a step's continuations each
    once (``None`` in older rows)."""
    context_tokens: int | None = None
    """Over those requests, the generated tokens of the partial solution each one sent."""
    root_prompt_tokens: int | None = None
    """Prompt tokens the provider reported for the search's first request (the problem)."""
    votes: dict[Aggregation, VoteOutcome]
    any_correct: bool | None = None
    """Some finished solution's answer is right (pass@N): the ceiling of every aggregation.
    ``None`` in rows written before it was recorded (the report reads it from the tree)."""

    @property
    def policy_tokens(self) -> int:
        """Prompt (as reported) and completion tokens of the policy."""
        return self.prompt_tokens + self.completion_tokens

    def uncached_prompt_tokens(self, problem_prompt: int) -> int | None:
        """The prompt tokens a server without a prompt cache would evaluate: for every
        request, the problem's prompt (``problem_prompt`` tokens) and the steps it sent.
        ``None`` for rows written before requests were counted."""
        if self.requests is None or self.context_tokens is None:
            return None
        return self.requests * problem_prompt + self.context_tokens


class EvalRow(BaseModel):
    """One finished search of one problem, graded; a line of the results file."""

    model_config = ConfigDict(extra="ignore")

    version: Literal[1] = 1
    run: str
    """Fingerprint of the run's settings (see ``EvalSettings.fingerprint``)."""
    label: str
    dataset: str
    problem_id: str
    question: str
    gold: str
    strategy: str
    budget: int
    """The search's own budget."""
    problem_prompt_tokens: int | None = None
    """Tokens of the problem's prompt alone, as the provider counts them
    (:class:`~rebase_agent.protocols.PromptCounter`): what a cache-less server evaluates of
    every request before its steps. ``None`` where the provider cannot count them; the report
    then estimates it from the first requests' reported prompt tokens."""
    outcomes: list[BudgetOutcome]
    grades: list[Grade] = Field(default_factory=list)
    """Every distinct answer the search finished with, graded against ``gold``."""
    stopped: str
    wall_s: float
    result: SearchResult
    """The search result; ``nodes`` is empty when the run did not keep trees."""
    double: bool = False
    """Run on a test double (a backend with no model behind it): its answers mean nothing.
    Reports mark such lines."""

    @property
    def key(self) -> tuple[str, str, int]:
        """``(problem_id, strategy, budget)``: unique within one run."""
        return (self.problem_id, self.strategy, self.budget)


def _parse_lines(path: Path, text: str) -> tuple[list[EvalRow], int]:
    """Rows of ``text``, and the length of the text up to the last complete row."""
    rows: list[EvalRow] = []
    good_end = 0
    offset = 0
    lines = text.split("\n")
    for number, line in enumerate(lines, start=1):
        is_last = number == len(lines)
        end = offset + len(line) + (0 if is_last else 1)
        if line.strip():
            try:
                rows.append(EvalRow.model_validate_json(line))
            except ValidationError as exc:
                if is_last:  # cut off by a kill mid-write: not a finished row
                    logger.warning("%s:%d: ignoring a partial last line", path, number)
                    break
                raise ResultsError(f"{path}:{number}: not a results row: {exc}") from None
        good_end = end
        offset = end
    return rows, good_end


def read_rows(paths: Iterable[str | Path]) -> list[EvalRow]:
    """Every row of the results files, in order; a partial last line is ignored. A file whose
    name ends in ``.gz`` is read through gzip (results kept compressed, e.g. in a repository).

    Raises:
        ResultsError: A file cannot be read (or decompressed), or a line other than the last
            is not a row.
    """
    rows: list[EvalRow] = []
    for path in map(Path, paths):
        try:
            if path.suffix == ".gz":
                text = gzip.decompress(path.read_bytes()).decode("utf-8")
            else:
                text = path.read_text(encoding="utf-8")
        except (OSError, EOFError) as exc:  # EOFError: a truncated gzip stream
            reason = getattr(exc, "strerror", None) or exc
            raise ResultsError(f"{path}: cannot read: {reason}") from exc
        rows.extend(_parse_lines(path, text)[0])
    return rows


def _lock(file: BinaryIO, path: Path) -> None:
    """Hold an exclusive lock on the open results file (POSIX), so two runs never append to
    the same file at once; the OS drops it when the process ends, even when killed."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        return
    try:
        fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        file.close()
        raise ResultsError(f"{path}: another run is writing this file") from None


class ResultsWriter:
    """Appends rows to a results file, each flushed and fsynced before the call returns.

    Args:
        path: The results JSONL; created with its folder when missing.
        run: The fingerprint of the run writing it; rows of another run make it refuse.

    Raises:
        ResultsError: The file holds rows of another run, a corrupt line before the last, or
            another process is writing it.
    """

    def __init__(self, path: str | Path, run: str) -> None:
        self.path = Path(path)
        self.run = run
        self.rows: dict[tuple[str, str, int], EvalRow] = {}
        self._lock = anyio.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = self.path.read_text(encoding="utf-8") if self.path.exists() else ""
        rows, good_end = _parse_lines(self.path, text)
        for row in rows:
            if row.run != run:
                raise ResultsError(
                    f"{self.path}: holds rows of another run (settings fingerprint {row.run}, "
                    f"this run {run}): the backend, options or search config differ; write to "
                    "another --output"
                )
            self.rows.setdefault(row.key, row)
        cut = text[:good_end].encode("utf-8")
        self._file = open(self.path, "r+b" if self.path.exists() else "w+b")  # noqa: SIM115
        _lock(self._file, self.path)
        self._file.truncate(len(cut))
        self._file.seek(0, os.SEEK_END)
        if cut and not cut.endswith(b"\n"):
            self._file.write(b"\n")

    async def append(self, row: EvalRow) -> None:
        """Write ``row`` as one line, flush and fsync it; a key already written is ignored."""
        async with self._lock:
            if row.key in self.rows:
                logger.warning("%s: row %s already written; not duplicated", self.path, row.key)
                return
            line = row.model_dump_json() + "\n"
            await anyio.to_thread.run_sync(self._write, line.encode("utf-8"))
            self.rows[row.key] = row

    def _write(self, data: bytes) -> None:
        self._file.write(data)
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        """Close the file."""
        self._file.close()

    def __enter__(self) -> ResultsWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
