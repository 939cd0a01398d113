"""The llama.cpp PRM (judge and Math-Shepherd modes) and prompt templates, on the tiny GGUF."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

pytest.importorskip("llama_cpp")

from providers.llamacpp import (
    ChatTemplate,
    CompletionTemplate,
    LlamaCppScorer,
)
from providers.llamacpp.scorer import label_probability
from providers.llamacpp.templates import resolve_template
from rebase_agent import ScoreRequest
from rebase_agent.prm import math_shepherd_text
from rebase_agent.usage import Usage, recording

pytestmark = [pytest.mark.anyio, pytest.mark.llama]

SOLUTIONS = (
    ("2 and 3 is 5\n\n", "the answer is 5\n\n"),
    ("2 and 3 is 6\n\n", "the answer is 6\n\n"),
    ("2 and 3 is 5\n\n",),
)


@pytest.fixture
def make_scorer(tiny_model: Any) -> Any:
    made: list[LlamaCppScorer] = []

    def make(**kwargs: Any) -> LlamaCppScorer:
        kwargs.setdefault("n_ctx", 2048)
        kwargs.setdefault("n_seq_max", 8)
        kwargs.setdefault("n_threads", 2)
        scorer = LlamaCppScorer(tiny_model, **kwargs)
        made.append(scorer)
        return scorer

    yield make
    for scorer in made:
        scorer.close()


def test_label_probability() -> None:
    assert label_probability([0.0, 0.0], 1) == pytest.approx(0.5)
    assert label_probability([1.0, 1.0, 1.0], 2) == pytest.approx(2 / 3)
    assert label_probability([1000.0, 0.0], 1) == pytest.approx(1.0)


async def test_judge_scores_every_step_and_reports_tokens(make_scorer: Any) -> None:
    scorer = make_scorer()
    assert len(scorer.labels) >= 2  # "Yes"/"No" found in the vocabulary
    usage = Usage()
    with recording(usage):
        scores = await scorer.score(ScoreRequest(problem="what is 2+3?", solutions=SOLUTIONS))
    assert [len(s) for s in scores] == [2, 2, 1]
    assert all(0.0 < x < 1.0 for s in scores for x in s)
    assert scores[2][0] == scores[0][0]  # same prefix, same score
    assert usage.scorer_prompt_tokens == scorer.engine.tokens_evaluated > 0


async def test_scored_prefixes_are_never_rescored(make_scorer: Any) -> None:
    scorer = make_scorer()
    first = await scorer.score(ScoreRequest(problem="q", solutions=SOLUTIONS[:1]))
    evaluated = scorer.engine.tokens_evaluated
    again = await scorer.score(ScoreRequest(problem="q", solutions=SOLUTIONS[:1]))
    assert again == first and scorer.engine.tokens_evaluated == evaluated
    longer = (*SOLUTIONS[0], "so 5\n\n")
    [scores] = await scorer.score(ScoreRequest(problem="q", solutions=(longer,)))
    assert scores[:2] == first[0]
    new_prompt = len(scorer.judge_tokens("q", longer))
    assert scorer.engine.tokens_evaluated - evaluated < new_prompt  # shared prefix reused


async def test_batched_scores_equal_one_at_a_time(make_scorer: Any) -> None:
    together_scorer, apart_scorer = make_scorer(), make_scorer()
    results: list[Any] = [None] * len(SOLUTIONS)

    async def one(i: int) -> None:
        request = ScoreRequest(problem="what is 2+3?", solutions=(SOLUTIONS[i],))
        results[i] = await together_scorer.score(request)

    async with anyio.create_task_group() as tg:
        for i in range(len(SOLUTIONS)):
            tg.start_soon(one, i)
    for i, solution in enumerate(SOLUTIONS):
        request = ScoreRequest(problem="what is 2+3?", solutions=(solution,))
        assert results[i][0] == pytest.approx((await apart_scorer.score(request))[0], abs=1e-4)


async def test_math_shepherd_scores_at_each_tag(make_scorer: Any) -> None:
    scorer = make_scorer(mode="math_shepherd")
    scores = await scorer.score(ScoreRequest(problem="what is 2+3?", solutions=SOLUTIONS))
    assert [len(s) for s in scores] == [2, 2, 1]
    assert scores[2][0] == pytest.approx(scores[0][0], abs=1e-4)  # causal: prefix scores agree
    tokens, reads = scorer.shepherd_tokens("what is 2+3?", SOLUTIONS[0])
    assert len(reads) == 2 and reads[-1] < len(tokens)


def test_math_shepherd_input_is_the_http_scorers_input(
    make_scorer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both providers score the same text (rebase_agent.prm.math_shepherd_text): steps stripped
    of surrounding whitespace and of tags they wrote themselves; each read at its tag's end."""
    scorer = make_scorer(mode="math_shepherd")
    model = scorer.model
    tokenized: list[str] = []
    tokenize = model.tokenize

    def recording(text: str, **kwargs: Any) -> list[int]:
        tokenized.append(text)
        return tokenize(text, **kwargs)

    monkeypatch.setattr(model, "tokenize", recording)
    steps = (" 2 + 3 = 5 ки\n", "The answer is 5.")
    tokens, reads = scorer.shepherd_tokens("what is 2+3?", steps)
    assert "".join(tokenized) == math_shepherd_text("what is 2+3?", steps)
    assert "".join(tokenized) == "what is 2+3? 2 + 3 = 5 ки\nThe answer is 5. ки"
    tag = tokenize(" ки", add_bos=False, special=False)
    for read in reads:
        assert tokens[read + 1 - len(tag) : read + 1] == tag
    assert reads[-1] == len(tokens) - 1


def test_missing_labels_fail_clearly(tiny_model: Any) -> None:
    with pytest.raises(ValueError, match="single token"):
        LlamaCppScorer(tiny_model, positive=("Affirmative!",), n_ctx=256)


def test_templates() -> None:
    plain = CompletionTemplate()
    assert plain.render("1+1?", "Step 1\n\n").endswith("\n\nStep 1\n\n")
    with pytest.raises(ValueError, match="solution"):
        CompletionTemplate("{solution} then {problem}")
    chat = ChatTemplate(
        "{{ bos_token }}{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}",
        bos_token="<s>",
    )
    assert chat.render("1+1?", "2") == "<s><user>1+1?<assistant>2"

    def resolve(template: Any, chat: bool, model_template: str | None) -> Any:
        return resolve_template(
            template,
            chat=chat,
            model_template=model_template,
            token_text=lambda t: "",
            bos=1,
            eos=2,
        )

    assert isinstance(resolve(None, False, None), CompletionTemplate)
    assert isinstance(resolve("Q: {problem}\nA: {solution}", False, None), CompletionTemplate)
    assert isinstance(resolve(None, True, "{{ messages[0].content }}"), ChatTemplate)
    with pytest.raises(ValueError, match="no chat template"):
        resolve(None, True, None)


def test_provider_renders_a_user_chat_template_with_one_bos(make_provider: Any) -> None:
    provider = make_provider(
        template="{{ bos_token }}[{{ messages[0].content }}]{% if add_generation_prompt %}>"
        "{% endif %}"
    )
    tokens = provider.tokenize_prompt("2+3", "so 5")
    assert tokens[0] == provider.model.bos and tokens.count(provider.model.bos) == 1
    assert isinstance(provider.template, ChatTemplate)
    plain = make_provider(template="Q {problem} A {solution}")
    assert plain.template.render("x", "y") == "Q x A y"


async def test_a_judge_on_the_policys_prompt_evaluates_only_its_question(tiny_model: Any) -> None:
    from providers.llamacpp import LlamaCppProvider
    from providers.llamacpp.templates import POLICY_JUDGE_QUESTION
    from rebase_agent import StepRequest

    provider = LlamaCppProvider(tiny_model, n_ctx=2048, n_seq_max=8, n_threads=2)
    judge = LlamaCppScorer(tiny_model, judge_prefix=provider.tokenize_prompt)
    own = LlamaCppScorer(tiny_model)  # the judge template's prompt, same context
    try:
        problem, steps = "what is 2+3?", ("2 and 3 is 5\n\n",)
        question = tiny_model.tokenize(POLICY_JUDGE_QUESTION, add_bos=False, special=False)
        policy_prompt = provider.tokenize_prompt(problem, steps[0])
        assert judge.judge_tokens(problem, steps) == policy_prompt + question
        # The policy evaluates the step's prompt (as it would have generated the step).
        await provider.generate(StepRequest(problem=problem, steps=steps, max_tokens=1, seed=0))
        spent = [Usage(), Usage()]
        for scorer, usage in zip((judge, own), spent, strict=True):
            with recording(usage):
                await scorer.score(ScoreRequest(problem=problem, solutions=(steps,)))
        assert spent[0].scorer_prompt_tokens == len(question)  # the rest was cached
        assert spent[1].scorer_prompt_tokens > len(policy_prompt) // 2
    finally:
        own.close()
        judge.close()
        provider.close()


def test_a_judge_on_the_policys_prompt_is_judge_mode_without_chat(tiny_model: Any) -> None:
    with pytest.raises(ValueError, match="judge_prefix needs mode='judge' and chat=False"):
        LlamaCppScorer(tiny_model, mode="math_shepherd", judge_prefix=lambda p, s: [])
