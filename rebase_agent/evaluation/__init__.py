"""Evaluation: datasets, grading, resumable runs, reports with scaling curves, tree views.

* :mod:`~rebase_agent.evaluation.datasets`: GSM8K, MATH500, any JSONL, Hugging Face datasets.
* :mod:`~rebase_agent.evaluation.grading`: math-verify grading behind a time limit.
* :mod:`~rebase_agent.evaluation.settings`, :mod:`~rebase_agent.evaluation.runner`:
  :func:`run_eval`, resumable, one row per finished search in a results JSONL
  (:mod:`~rebase_agent.evaluation.results`), graded by :mod:`~rebase_agent.evaluation.outcomes`.
* :mod:`~rebase_agent.evaluation.progress`: the ``eval`` progress bar.
* :mod:`~rebase_agent.evaluation.report`: accuracy against compute, Wilson intervals, plots.
* :mod:`~rebase_agent.evaluation.tree_view`: one search tree as text or HTML.
* :mod:`~rebase_agent.evaluation.arithmetic`: the arithmetic-chain task and its verifier.
"""

from rebase_agent.evaluation.arithmetic import ArithmeticChain as ArithmeticChain
from rebase_agent.evaluation.arithmetic import ArithmeticVerifier as ArithmeticVerifier
from rebase_agent.evaluation.arithmetic import generate_chains as generate_chains
from rebase_agent.evaluation.datasets import DatasetError as DatasetError
from rebase_agent.evaluation.datasets import DatasetSpec as DatasetSpec
from rebase_agent.evaluation.datasets import Problem as Problem
from rebase_agent.evaluation.datasets import load_dataset as load_dataset
from rebase_agent.evaluation.grading import Grade as Grade
from rebase_agent.evaluation.grading import grade_answers as grade_answers
from rebase_agent.evaluation.progress import ProgressBar as ProgressBar
from rebase_agent.evaluation.report import ReportSummary as ReportSummary
from rebase_agent.evaluation.report import format_table as format_table
from rebase_agent.evaluation.report import plot_scaling as plot_scaling
from rebase_agent.evaluation.report import summarize as summarize
from rebase_agent.evaluation.report import wilson_interval as wilson_interval
from rebase_agent.evaluation.results import EvalRow as EvalRow
from rebase_agent.evaluation.results import ResultsError as ResultsError
from rebase_agent.evaluation.results import read_rows as read_rows
from rebase_agent.evaluation.runner import EvalSummary as EvalSummary
from rebase_agent.evaluation.runner import run_eval as run_eval
from rebase_agent.evaluation.settings import EvalSettings as EvalSettings
from rebase_agent.evaluation.tree_view import render_html as render_html
from rebase_agent.evaluation.tree_view import render_text as render_text

__all__ = (
    "ArithmeticChain",
    "ArithmeticVerifier",
    "DatasetError",
    "DatasetSpec",
    "EvalRow",
    "EvalSettings",
    "EvalSummary",
    "Grade",
    "Problem",
    "ProgressBar",
    "ReportSummary",
    "ResultsError",
    "format_table",
    "generate_chains",
    "grade_answers",
    "load_dataset",
    "plot_scaling",
    "read_rows",
    "render_html",
    "render_text",
    "run_eval",
    "summarize",
    "wilson_interval",
)
