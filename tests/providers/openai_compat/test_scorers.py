"""PRM scorers over HTTP: vLLM /pooling, generative PRMs and judges from top_logprobs."""

from __future__ import annotations

import math
from collections.abc import Iterator

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from providers.openai_compat import (
    JudgeScorer,
    MathShepherdPoolingScorer,
    MathShepherdScorer,
    QwenPRMScorer,
    RLHFlowScorer,
)
from providers.openai_compat.logprob_scorers import AUTO_BATCH_SIZE
from rebase_agent import Scorer, ScoreRequest, ScoringError
from rebase_agent.prm import label_probability
from rebase_agent.usage import Usage, recording
from tests.providers.openai_compat.fake_server import FakeApp, Flavor, serve

pytestmark = pytest.mark.anyio
ln = math.log


@pytest.fixture
def usage() -> Iterator[Usage]:
    """Stand in for a running search, so record_scorer_tokens has somewhere to add."""
    current = Usage()
    with recording(current):
        yield current


def request(*solutions: tuple[str, ...]) -> ScoreRequest:
    return ScoreRequest(problem="What is 2+2?", solutions=solutions)


async def test_qwen_prm_scores_every_step_in_one_batched_request(usage: Usage) -> None:
    app = FakeApp()
    async with serve(app) as url, QwenPRMScorer("prm", url) as scorer:
        assert isinstance(scorer, Scorer)
        scores = await scorer.score(
            request(("good a\n\n", "bad b\n\n"), ("good a\n\n", "good c\n\n"), ("good a\n\n",))
        )
    assert scores == [[0.9, pytest.approx(0.1)], [0.9, 0.9], [0.9]]
    (seen,) = app.paths("/pooling")
    assert seen.body["task"] == "token_classify"
    texts = seen.body["input"]
    assert len(texts) == 2  # ("good a",) is a prefix of both: not sent on its own
    assert texts[0] == (
        "<|im_start|>system\nPlease reason step by step, and put your final answer within "
        "\\boxed{}.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
        "<|im_start|>assistant\ngood a<extra_0>bad b<extra_0><|im_end|>\n"
    )
    assert usage.scorer_prompt_tokens > 0


async def test_prefixes_already_scored_are_never_sent_again() -> None:
    app = FakeApp()
    async with serve(app) as url, QwenPRMScorer("prm", url) as scorer:
        await scorer.score(request(("good a", "good b")))
        assert await scorer.score(request(("good a",), ("good a", "good b"))) == [
            [0.9],
            [0.9, 0.9],
        ]
        assert len(app.requests) == 1
        await scorer.score(request(("good a", "good b", "bad c")))
    assert len(app.requests) == 2 and scorer.sent_prefixes == 2


async def test_pooling_batches_are_split_and_sent_concurrently() -> None:
    app = FakeApp()
    async with serve(app) as url, QwenPRMScorer("prm", url, batch_size=2) as scorer:
        scores = await scorer.score(request(*[(f"good {i}",) for i in range(5)]))
    assert scores == [[0.9]] * 5
    assert [len(r.body["input"]) for r in app.requests] == [2, 2, 1]


async def test_math_shepherd_pooling_reads_plus_at_each_tag() -> None:
    app = FakeApp()
    app.pooling_tag, app.pool_positive_first = "ки", True
    async with serve(app) as url, MathShepherdPoolingScorer("ms", url, task=None) as scorer:
        scores = await scorer.score(request(("Step 1: good ки", "Step 2: bad\n\n")))
    assert scores == [[0.9, pytest.approx(0.1)]]
    body = app.requests[0].body
    assert body["input"] == ["What is 2+2? Step 1: good ки\nStep 2: bad ки"]
    assert "task" not in body


async def test_pooling_with_the_wrong_number_of_rows_is_a_scoring_error() -> None:
    app = FakeApp()
    app.pooling_tag = "<nothing>"
    async with serve(app) as url, QwenPRMScorer("prm", url) as scorer:
        with pytest.raises(ScoringError, match="step tag"):
            await scorer.score(request(("a", "b")))


async def test_judge_chat_reads_p_yes_and_records_usage(usage: Usage) -> None:
    app = FakeApp()
    async with serve(app) as url, JudgeScorer("judge", url) as scorer:
        scores = await scorer.score(request(("x = 1\n\n", "x + 1 = 2\n\n")))
    assert scores == [[pytest.approx(0.6 / 0.9)] * 2]
    bodies = [r.body for r in app.paths("/v1/chat/completions")]
    assert len(bodies) == 2  # one per prefix
    body = max(bodies, key=lambda b: len(b["messages"][-1]["content"]))
    assert body["logprobs"] is True and body["top_logprobs"] == 20
    assert body["max_tokens"] == 1 and body["temperature"] == 0.0
    assert body["messages"][0]["role"] == "system"
    assert "Last step:\nx + 1 = 2" in body["messages"][1]["content"]
    assert "Solution so far:\nx = 1" in body["messages"][1]["content"]
    assert usage.scorer_prompt_tokens > 0 and usage.scorer_completion_tokens == 2 * 2


async def test_judge_completions_sums_spelling_variants() -> None:
    app = FakeApp()
    app.label_logprobs = {" Yes": ln(0.5), "yes": ln(0.1), " No": ln(0.2), "\n": ln(0.1)}
    async with serve(app) as url, JudgeScorer("judge", url, api="completions") as scorer:
        scores = await scorer.score(request(("a",)))
    assert scores == [[pytest.approx(0.6 / 0.8)]]
    body = app.requests[0].body
    assert body["prompt"].endswith("Answer:") and body["logprobs"] == 20


async def test_judge_completions_reads_llama_servers_chat_layout_logprobs() -> None:
    # llama-server's /v1/completions puts logprobs in the chat layout (content[0].top_logprobs).
    app = FakeApp(Flavor(server="llama_server", stop_style="llama_server"))
    app.label_logprobs = {" Yes": ln(0.5), "yes": ln(0.1), " No": ln(0.2), "\n": ln(0.1)}
    async with serve(app) as url, JudgeScorer("judge", url, api="completions") as scorer:
        scores = await scorer.score(request(("a",)))
    assert scores == [[pytest.approx(0.6 / 0.8)]]


async def test_judge_bounds_a_label_missing_from_the_top_k() -> None:
    app = FakeApp()
    app.label_logprobs = {"Yes": ln(0.7), "Maybe": ln(0.1)}
    async with serve(app) as url, JudgeScorer("judge", url) as scorer:
        assert await scorer.score(request(("a",))) == [[pytest.approx(0.7 / 0.8)]]
        app.label_logprobs = {"Maybe": ln(0.9)}
        assert await scorer.score(request(("b",))) == [[0.5]]
    assert scorer.unconfident == 1


async def test_judge_caches_prefixes_and_scores_only_new_nodes() -> None:
    app = FakeApp()
    async with serve(app) as url, JudgeScorer("judge", url) as scorer:
        await scorer.score(request(("a", "b"), ("a", "c")))
        assert len(app.requests) == 3  # a, ab, ac
        await scorer.score(request(("a", "b", "d"), ("a", "c")))
    assert len(app.requests) == 4  # only abd


async def test_rlhflow_puts_one_user_turn_per_step() -> None:
    app = FakeApp()
    app.label_logprobs = {"+": ln(0.8), "-": ln(0.2)}
    async with serve(app) as url, RLHFlowScorer("rlhflow", url) as scorer:
        scores = await scorer.score(request(("s1\n\n", "s2\n\n")))
    assert scores == [[pytest.approx(0.8)] * 2]
    last = max((r.body for r in app.requests), key=lambda b: len(b["messages"]))
    assert last["messages"] == [
        {"role": "user", "content": "What is 2+2? s1"},
        {"role": "assistant", "content": "+"},
        {"role": "user", "content": "s2"},
    ]


async def test_math_shepherd_generative_ends_the_prompt_at_the_tag() -> None:
    app = FakeApp()
    app.label_logprobs = {"+": ln(0.3), "-": ln(0.6)}
    async with serve(app) as url, MathShepherdScorer("ms", url) as scorer:
        scores = await scorer.score(request(("Step 1: a\n\n", "Step 2: b\n\n")))
    assert scores == [[pytest.approx(1 / 3)] * 2]
    prompts = sorted(r.body["prompt"] for r in app.requests)
    assert prompts[-1] == "What is 2+2? Step 1: a ки\nStep 2: b ки"


async def test_a_server_without_logprobs_is_a_scoring_error() -> None:
    app = FakeApp()
    app.label_logprobs = {}
    async with serve(app) as url, MathShepherdScorer("ms", url) as scorer:
        with pytest.raises(ScoringError, match="no logprobs"):
            await scorer.score(request(("a",)))


def test_label_probability_cases() -> None:
    both = label_probability({"▁Yes": ln(0.3), "YES": ln(0.1), "No": ln(0.4)}, ["Yes"], ["No"])
    assert both.confident and both.score == pytest.approx(0.5)
    missing_no = label_probability({"Yes": ln(0.95), "a": ln(0.04)}, ["Yes"], ["No"])
    assert missing_no.negative == pytest.approx(0.01)  # the mass left over, below 0.04
    assert label_probability({}, ["Yes"], ["No"]).score == 0.5


@given(
    st.dictionaries(
        st.sampled_from(["Yes", " yes", "No", " no", "x", "y", "z"]),
        st.floats(min_value=-30, max_value=0),
        max_size=7,
    )
)
def test_label_probability_is_a_probability(logprobs: dict[str, float]) -> None:
    result = label_probability(logprobs, ["Yes"], ["No"])
    assert 0.0 <= result.score <= 1.0
    assert result.positive >= 0 and result.negative >= 0


async def test_completions_judge_batches_prompts_in_order(usage: Usage) -> None:
    app = FakeApp()
    app.logprobs_for = lambda prompt: (
        {" Yes": ln(0.2), " No": ln(0.6)} if "bad" in prompt else {" Yes": ln(0.6), " No": ln(0.2)}
    )
    async with serve(app) as url:
        async with JudgeScorer("judge", url, api="completions", batch_size=4) as scorer:
            scores = await scorer.score(
                request(*[(f"{'bad' if i % 2 else 'good'} {i}",) for i in range(6)])
            )
    assert scores == [[pytest.approx(0.75 if i % 2 == 0 else 0.25)] for i in range(6)]
    assert [len(r.body["prompt"]) for r in app.requests] == [4, 2]
    assert usage.scorer_completion_tokens == app.usage_sent["completion_tokens"]
    assert usage.scorer_prompt_tokens == app.usage_sent["prompt_tokens"]


def test_a_judge_template_with_an_unknown_field_fails_when_built() -> None:
    with pytest.raises(ValueError, match=r"user_template '\{question\}': unknown placeholder"):
        JudgeScorer("m", "http://127.0.0.1:9/v1", user_template="{question}")
    with pytest.raises(ValueError, match=r"prompt_template 'Q \{problem\}\}': Single '\}'"):
        JudgeScorer("m", "http://127.0.0.1:9/v1", prompt_template="Q {problem}}")


async def test_judge_completions_prompt_is_the_llama_judges() -> None:
    app = FakeApp()
    async with serve(app) as url, JudgeScorer("j", url, api="completions") as scorer:
        await scorer.score(request(("x = 1\n\n", "x + 1 = 2\n\n")))
    longest = max((r.body["prompt"] for r in app.requests), key=len)
    assert longest == (
        "Below is a math problem and a solution, step by step. Decide whether the last step is "
        "correct.\n\nProblem: What is 2+2?\n\nSolution:\nx = 1\n\nx + 1 = 2\n\n"
        "Is the last step correct (Yes or No)? Answer:"
    )


async def test_score_calls_for_one_problem_that_arrive_together_share_requests() -> None:
    app = FakeApp()
    app.logprobs_for = lambda prompt: (
        {" Yes": ln(0.2), " No": ln(0.6)} if "bad" in prompt else {" Yes": ln(0.6), " No": ln(0.2)}
    )
    # Five searches' worth of score calls (a node's children each), one usage per search.
    calls = [[(f"{'bad' if (k + i) % 2 else 'good'} {k}.{i}",) for i in range(3)] for k in range(5)]
    usages = [Usage() for _ in calls]
    got: dict[int, list[list[float]]] = {}
    async with serve(app) as url:
        async with JudgeScorer("judge", url, api="completions", batch_size=8) as scorer:

            async def one(k: int) -> None:
                with recording(usages[k]):
                    got[k] = await scorer.score(request(*calls[k]))

            async with anyio.create_task_group() as tg:
                for k in range(len(calls)):
                    tg.start_soon(one, k)
    for k, solutions in enumerate(calls):
        expected = [[0.25 if "bad" in s[0] else 0.75] for s in solutions]
        assert got[k] == [[pytest.approx(v) for v in row] for row in expected]
    assert [len(r.body["prompt"]) for r in app.requests] == [8, 7]  # 15 prefixes, not 5 calls
    # each search is charged its share of what the server reported, nothing lost
    assert sum(u.scorer_prompt_tokens for u in usages) == app.usage_sent["prompt_tokens"]
    assert sum(u.scorer_completion_tokens for u in usages) == app.usage_sent["completion_tokens"]
    assert all(u.scorer_prompt_tokens > 0 for u in usages)


async def test_a_judge_on_vllm_batches_and_its_limit_adapts_unless_told() -> None:
    app = FakeApp(Flavor(server="vllm"))
    async with serve(app) as url:
        async with JudgeScorer("judge", url, api="auto") as scorer:
            await scorer.prepare()
            assert scorer.api == "completions" and scorer.batch_size == AUTO_BATCH_SIZE
            assert scorer.endpoints.endpoints[0].limit.adaptive
        async with JudgeScorer("judge", url, api="auto", batch_size=1) as scorer:
            await scorer.prepare()
            assert scorer.batch_size == 1  # given: kept
        async with JudgeScorer("judge", url, max_concurrency=16) as scorer:
            assert not scorer.endpoints.endpoints[0].limit.adaptive
