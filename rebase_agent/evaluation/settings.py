"""Settings of one evaluation run: a pydantic model, loadable from TOML or YAML, overridable.

Example ``eval.toml``::

    strategies = ["rebase", "sampling"]
    budgets = [1, 2, 4, 8, 16]
    backend = "llama"         # the default: the embedded Gemma 3 270M
    output = "runs/gsm8k.jsonl"

    [dataset]
    source = "../shared/data/gsm8k_test.jsonl"
    limit = 50

    [config]            # RebaseConfig fields; budget is set per run
    balance_temperature = 0.1
    seed = 0

``rebase-agent eval --config eval.toml --budgets 1,2,4`` reads the file, then applies the flags.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rebase_agent.backends import DEFAULT_BACKEND, is_double
from rebase_agent.config import RebaseConfig, StrategyName
from rebase_agent.evaluation.datasets import DatasetSpec
from rebase_agent.scorers import DEFAULT_CHECK, Check

__all__ = ("EvalSettings", "SearchUnit", "load_settings_file")

_DEFAULT_STRATEGIES: list[StrategyName] = ["rebase", "sampling"]


class SearchUnit(BaseModel):
    """One search per problem: a strategy at a budget, and the budgets its result answers."""

    model_config = ConfigDict(frozen=True)

    strategy: StrategyName
    budget: int
    answers: tuple[int, ...]
    """Budgets read from this search: only ``budget`` itself, or every requested budget up to
    it for sampling, whose first k paths are an honest run of k independent samples."""


class EvalSettings(BaseModel):
    """Everything ``rebase-agent eval`` needs; flags override a config file field by field.

    Relative paths (``output``, ``dataset.source``) are relative to the working directory.
    """

    model_config = ConfigDict(extra="forbid")

    dataset: DatasetSpec
    output: Path
    """Results JSONL: appended to, one row per finished search; rerunning resumes it."""
    strategies: list[StrategyName] = Field(default_factory=lambda: _DEFAULT_STRATEGIES.copy())
    budgets: list[int] = Field(default_factory=lambda: [1, 2, 4, 8, 16])
    backend: str = DEFAULT_BACKEND
    """Backend name (see :mod:`rebase_agent.backends`); test doubles run only when named."""
    options: dict[str, str] = Field(default_factory=dict)
    """Backend options, as ``--option KEY=VALUE``."""
    verifier: Literal["arithmetic"] | None = None
    """Replace the backend's scorer with a built-in process verifier."""
    check: Check = DEFAULT_CHECK
    """Multiply the scorer's step scores by a tool check (:func:`rebase_agent.with_check`);
    ``none``: the scorer alone."""
    config: dict[str, Any] = Field(default_factory=dict)
    """:class:`~rebase_agent.RebaseConfig` fields shared by every search (not ``budget``)."""
    label: str | None = None
    """Name of this run's lines in reports (default: the backend name)."""
    max_concurrent_problems: int = Field(8, ge=1)
    """Searches in flight at once; provider and scorer limits come from ``config``."""
    subsample_sampling: bool = True
    """Answer every sampling budget from one search at the largest budget."""
    grade_timeout_s: float = Field(5.0, gt=0.0)
    """Time limit of one math-verify grading comparison."""
    keep_trees: bool = True
    """Store every search tree (needed by ``rebase-agent show``)."""

    @field_validator("output")
    @classmethod
    def _appendable(cls, value: Path) -> Path:
        if value.suffix == ".gz":
            raise ValueError(
                f"{str(value)!r}: results are appended a row at a time, which a gzip file cannot "
                "take; write .jsonl and compress it when the run is done (report and show read "
                ".jsonl.gz)"
            )
        return value

    @field_validator("budgets")
    @classmethod
    def _budgets(cls, value: list[int]) -> list[int]:
        if not value or any(b < 1 for b in value):
            raise ValueError(f"budgets must be a non-empty list of positive integers: {value}")
        return sorted(set(value))

    @field_validator("strategies")
    @classmethod
    def _strategies(cls, value: list[StrategyName]) -> list[StrategyName]:
        if not value:
            raise ValueError("needs at least one strategy")
        return list(dict.fromkeys(value))

    @model_validator(mode="after")
    def _configs_valid(self) -> EvalSettings:
        if "budget" in self.config:
            raise ValueError("set budgets with `budgets`, not config.budget")
        for budget in self.budgets:
            self.search_config(budget)  # raises ValidationError naming the field
        return self

    def search_config(self, budget: int) -> RebaseConfig:
        """The config of one search at ``budget``."""
        return RebaseConfig.model_validate({**self.config, "budget": budget})

    def units(self) -> list[SearchUnit]:
        """The searches to run for every problem."""
        out: list[SearchUnit] = []
        for strategy in self.strategies:
            if strategy == "sampling" and self.subsample_sampling:
                out.append(
                    SearchUnit(
                        strategy=strategy, budget=self.budgets[-1], answers=tuple(self.budgets)
                    )
                )
            else:
                out.extend(
                    SearchUnit(strategy=strategy, budget=b, answers=(b,)) for b in self.budgets
                )
        return out

    def run_label(self) -> str:
        """The label of this run's rows."""
        return self.label or self.backend

    def on_double(self) -> bool:
        """Whether the backend is a test double (no model): the run's accuracy means nothing."""
        return is_double(self.backend)

    def fingerprint(self) -> str:
        """A hash of the settings that decide a search's outcome, as the user gave them
        (backend, options, verifier, check, config fields, label): rows written under another
        fingerprint are not resumed. Defaults are left out, so a library upgrade that adds a
        config field does not orphan a run."""
        key = {
            "backend": self.backend,
            "options": self.options,
            "verifier": self.verifier,
            "config": self.config,
            "label": self.run_label(),
        }
        if self.check != "none":  # rows from before checks existed resume with --check none
            key["check"] = self.check
        blob = json.dumps(key, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def load_settings_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML (``.toml``) or YAML (``.yaml``/``.yml``) settings file into a dict.

    Raises:
        ValueError: Unknown extension, unreadable file or a file that is not a mapping.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"{p}: cannot read: {exc.strerror or exc}") from exc
    if p.suffix == ".toml":
        try:
            data: Any = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{p}: bad TOML: {exc}") from exc
    elif p.suffix in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValueError(f"{p}: bad YAML: {exc}") from exc
    else:
        raise ValueError(f"{p}: settings files are .toml, .yaml or .yml")
    if not isinstance(data, dict):
        raise ValueError(f"{p}: expected a mapping at the top level")
    return data
