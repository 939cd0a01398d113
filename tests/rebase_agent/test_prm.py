"""The PRM toolkit: label probabilities, the prefix score cache, Math-Shepherd, judge prompts."""

from __future__ import annotations

import math

import pytest

from rebase_agent import ProviderError, ScoreRequest, ScoringError
from rebase_agent.prm import (
    JUDGE_PROMPT,
    JUDGE_USER,
    CachedScorer,
    JudgeTemplate,
    class_probability,
    judge_fields,
    label_probability,
    logit_label_probability,
    math_shepherd_segments,
    math_shepherd_text,
    spelling_variants,
)

pytestmark = pytest.mark.anyio


def test_spelling_variants_are_the_llama_scorers_label_lists() -> None:
    assert spelling_variants(["Yes"]) == ("Yes", " Yes", "yes", " yes", "YES", " YES")
    assert spelling_variants(["No"]) == ("No", " No", "no", " no", "NO", " NO")
    assert spelling_variants(["+"]) == ("+", " +")


def test_logit_label_probability_is_a_softmax_over_the_label_tokens() -> None:
    assert logit_label_probability([0.0, 0.0], 1) == pytest.approx(0.5)
    assert logit_label_probability([1.0, 1.0, 1.0], 2) == pytest.approx(2 / 3)
    assert logit_label_probability([1000.0, 0.0], 1) == pytest.approx(1.0)
    assert logit_label_probability([0.0, math.log(3.0)], 1) == pytest.approx(0.25)


def test_class_probability_reads_probabilities_or_logits() -> None:
    assert class_probability([0.2, 0.6], 1) == pytest.approx(0.75)  # renormalised
    assert class_probability([0.0, 0.0], 1) == 0.5
    assert class_probability([-1.0, 1.0], 1) == pytest.approx(1 / (1 + math.exp(-2)))
    with pytest.raises(ScoringError, match="at least 2 class values"):
        class_probability([0.5], 0)


def test_label_probability_from_top_logprobs_sums_spellings() -> None:
    got = label_probability(
        {"Yes": math.log(0.3), " yes": math.log(0.3), "No": math.log(0.2)}, ["Yes"], ["No"]
    )
    assert got.confident and got.score == pytest.approx(0.75)


def test_math_shepherd_input_reads_at_each_tag() -> None:
    steps = ("Step 1: good ки", "Step 2: bad\n\n")
    assert math_shepherd_text("What is 2+2?", steps) == (
        "What is 2+2? Step 1: good ки\nStep 2: bad ки"
    )
    pieces = math_shepherd_segments("P", steps)
    assert [text for text, read in pieces if read] == [" ки", " ки"]
    assert "".join(text for text, _ in pieces) == "P Step 1: good ки\nStep 2: bad ки"


def test_judge_fields_and_the_default_prompts() -> None:
    steps = ("x = 1\n\n", "  x + 1 = 2\n\n")
    fields = judge_fields("p", steps)
    assert fields == {
        "problem": "p",
        "previous": "x = 1\n\n",
        "step": "  x + 1 = 2",
        "last": "x + 1 = 2",
        "so_far": "x = 1",
        "solution": "x = 1\n\n  x + 1 = 2",
    }
    assert judge_fields("p", ("a",))["so_far"] == "(none)"
    prompt = JudgeTemplate(JUDGE_PROMPT).render("1+1?", ("1 + 1 = 2\n\n", "So 2.\n\n"))
    assert prompt.endswith(
        "Solution:\n1 + 1 = 2\n\nSo 2.\n\nIs the last step correct (Yes or No)? Answer:"
    )
    user = JudgeTemplate(JUDGE_USER).render("1+1?", ("So 2.\n\n",))
    assert "Solution so far:\n(none)\n\nLast step:\nSo 2.\n\n" in user


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            "{problem} {question}",
            r"judge_template '\{problem\} \{question\}': unknown placeholder \{question\}",
        ),
        ("{problem} {", "Single '{' encountered in format string"),
        ("{} {problem}", r"unknown placeholder \{\}"),
        ("{step:d}", "does not render"),
    ],
)
def test_a_bad_judge_template_fails_when_built(source: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        JudgeTemplate(source, name="judge_template")


class LastSteps(CachedScorer):
    """Scores a prefix by its length, recording what it was asked."""

    def __init__(self, **kwargs: int) -> None:
        super().__init__(**kwargs)
        self.asked: list[list[tuple[str, ...]]] = []
        self.fail: Exception | None = None
        self.answer: list[float] | None = None

    async def score_last_steps(self, problem: str, prefixes: list[tuple[str, ...]]) -> list[float]:
        self.asked.append(prefixes)
        if self.fail is not None:
            raise self.fail
        return self.answer if self.answer is not None else [len(p) / 10 for p in prefixes]


class WholeSolutions(CachedScorer):
    scores_all_steps = True

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[list[tuple[str, ...]]] = []

    async def score_solutions(
        self, problem: str, solutions: list[tuple[str, ...]]
    ) -> list[list[float]]:
        self.asked.append(solutions)
        return [[d / 10 for d in range(1, len(s) + 1)] for s in solutions]


async def test_last_step_scorers_send_each_prefix_once() -> None:
    scorer = LastSteps()
    request = ScoreRequest(problem="p", solutions=(("a", "b"), ("a", "c"), ("a",)))
    assert await scorer.score(request) == [[0.1, 0.2], [0.1, 0.2], [0.1]]
    assert scorer.asked == [[("a",), ("a", "b"), ("a", "c")]]
    again = ScoreRequest(problem="p", solutions=(("a", "b", "d"),))
    assert await scorer.score(again) == [[0.1, 0.2, 0.3]]
    assert scorer.asked[1:] == [[("a", "b", "d")]] and scorer.sent_prefixes == 4
    other = ScoreRequest(problem="q", solutions=(("a",),))  # another problem: not the same key
    await scorer.score(other)
    assert scorer.asked[2:] == [[("a",)]]


async def test_whole_solution_scorers_send_only_the_longest_missing_prefixes() -> None:
    scorer = WholeSolutions()
    request = ScoreRequest(problem="p", solutions=(("a", "b"), ("a", "c"), ("a",)))
    assert await scorer.score(request) == [[0.1, 0.2], [0.1, 0.2], [0.1]]
    assert scorer.asked == [[("a", "b"), ("a", "c")]] and scorer.sent_prefixes == 2


async def test_the_cache_keeps_the_most_recently_used_prefixes() -> None:
    scorer = LastSteps(cache_size=2)
    for steps in (("a",), ("b",), ("a",), ("c",)):
        await scorer.score(ScoreRequest(problem="p", solutions=(steps,)))
    await scorer.score(ScoreRequest(problem="p", solutions=(("a",), ("b",))))
    assert scorer.asked == [[("a",)], [("b",)], [("c",)], [("b",)]]  # b was evicted, a was not


async def test_failures_and_bad_answers_are_scoring_errors() -> None:
    scorer = LastSteps()
    request = ScoreRequest(problem="p", solutions=(("a",),))
    scorer.fail = ProviderError("server down")
    with pytest.raises(ScoringError, match="server down"):
        await scorer.score(request)
    scorer.fail, scorer.answer = None, [0.5, 0.5]
    with pytest.raises(ScoringError, match="asked for 1 scores, got 2"):
        await scorer.score(request)
    scorer.answer = [math.nan]
    with pytest.raises(ScoringError, match="non-finite score nan"):
        await scorer.score(request)
    with pytest.raises(NotImplementedError, match="WholeSolutions does not score last steps"):
        await WholeSolutions().score_last_steps("p", [("a",)])
    with pytest.raises(ValueError, match="cache_size must be >= 1, got 0"):
        LastSteps(cache_size=0)
