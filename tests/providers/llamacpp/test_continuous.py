"""Continuous batching in the llama.cpp engine, on the tiny random GGUF (real bindings).

Requests join the running decode loop between ``llama_decode`` calls, leave it when done, are
admitted fairly across owners when the context is full, and fail alone.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

pytest.importorskip("llama_cpp")

import anyio.lowlevel

from providers.llamacpp import LlamaCppScorer
from providers.llamacpp._jobs import GenJob, Job
from rebase_agent import ProviderError, ScoreRequest, ScoringError, StepRequest

pytestmark = [pytest.mark.anyio, pytest.mark.llama]


def req(problem: str = "what is 2+3?", **kw: Any) -> StepRequest:
    kw.setdefault("max_tokens", 12)
    kw.setdefault("stop", ())
    kw.setdefault("temperature", 0)
    return StepRequest(problem=problem, **kw)


def assert_clean(engine: Any) -> None:
    """No sequence, cell or reservation is left behind (prefix cache off)."""
    assert engine.pool.reserved == 0 and engine.pool.ledger.used() == 0
    assert engine.pool.n_free == engine.n_seq_max and not engine.busy
    assert all(engine.seq_pos_max(s) == -1 for s in range(engine.n_seq_max))


async def test_a_prompt_too_long_fails_alone(make_provider: Any) -> None:
    provider = make_provider(n_ctx=256, n_seq_max=4, prefix_cache=False)
    outcome: dict[str, Any] = {}

    async def send(name: str, request: StepRequest) -> None:
        try:
            outcome[name] = await provider.generate(request)
        except ProviderError as exc:
            outcome[name] = exc

    async with anyio.create_task_group() as tg:  # both join the same decode loop
        tg.start_soon(send, "short", req(n=2))
        tg.start_soon(send, "long", req("word " * 400, n=2))
    long_tokens = len(provider.tokenize_prompt("word " * 400, ""))
    assert isinstance(outcome["long"], ProviderError)
    assert f"prompt ({long_tokens} tokens)" in str(outcome["long"])
    assert "n_ctx = 256" in str(outcome["long"])
    assert [c.completion_tokens for c in outcome["short"]] == [12, 12]
    assert provider.engine.tokens_evaluated < long_tokens  # refused before any compute
    assert_clean(provider.engine)


async def test_a_failed_scoring_job_fails_alone(tiny_model: Any) -> None:
    scorer = LlamaCppScorer(tiny_model, n_ctx=256, n_seq_max=4, n_threads=2)
    try:
        outcome: dict[str, Any] = {}

        async def send(name: str, problem: str) -> None:
            request = ScoreRequest(problem=problem, solutions=(("2 and 3 is 5\n\n",),))
            try:
                outcome[name] = await scorer.score(request)
            except ScoringError as exc:
                outcome[name] = exc

        async with anyio.create_task_group() as tg:
            tg.start_soon(send, "short", "what is 2+3?")
            tg.start_soon(send, "long", "word " * 400)
        assert isinstance(outcome["long"], ScoringError) and "n_ctx = 256" in str(outcome["long"])
        [[score]] = outcome["short"]
        assert 0.0 < score < 1.0
    finally:
        scorer.close()


async def test_a_short_request_overtakes_a_long_one(make_provider: Any) -> None:
    provider = make_provider(prefix_cache=False)
    engine = provider.engine
    order: list[str] = []
    result: dict[str, Any] = {}

    async def send(name: str, request: StepRequest) -> None:
        result[name] = await provider.generate(request)
        order.append(name)

    async with anyio.create_task_group() as tg:
        tg.start_soon(send, "long", req("the answer is", max_tokens=200))
        while engine.decode_calls < 3:  # the long one is decoding
            await anyio.lowlevel.checkpoint()
        started = engine.decode_calls
        tg.start_soon(send, "short", req("Question: 7 and 8", max_tokens=2))
    assert started < 200
    assert order == ["short", "long"]  # the short one did not wait for the long run
    assert result["long"][0].completion_tokens > 100  # 200, or EOS (random weights)
    assert [c.completion_tokens for c in result["short"]] == [2]
    assert_clean(engine)


async def test_cancelling_one_request_frees_its_sequences_and_spares_the_other(
    make_provider: Any,
) -> None:
    provider = make_provider(n_ctx=16384, prefix_cache=False)
    engine = provider.engine
    kept: list[Any] = []

    async def keep() -> None:
        kept.extend(await provider.generate(req("the answer is", n=2, max_tokens=300)))

    async def doomed() -> None:
        with anyio.CancelScope() as scope:
            cancel_scopes.append(scope)
            await provider.generate(req("what is 2+3?", n=4, max_tokens=3000))

    cancel_scopes: list[anyio.CancelScope] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(doomed)
        tg.start_soon(keep)
        while engine.decode_calls < 5:
            await anyio.lowlevel.checkpoint()
        cancel_scopes[0].cancel()
    assert engine.tokens_evaluated < 2 * 300 + 4 * 400  # the cancelled one stopped early
    assert len(kept) == 2 and all(c.finish_reason in ("length", "eos") for c in kept)
    assert_clean(engine)


def gen_job(prompt: list[int], owner: str, n: int, max_tokens: int) -> GenJob:
    return GenJob(
        prompt=prompt,
        n=n,
        max_tokens=max_tokens,
        stop=(),
        temperature=0.0,
        top_p=1.0,
        seed=None,
        owner=owner,
    )


def test_owners_take_turns_when_the_context_is_full(make_provider: Any) -> None:
    # Room for about two continuations at once: the first owner asked for six of them.
    provider = make_provider(n_ctx=160, n_seq_max=8, prefix_cache=False)
    engine = provider.engine
    prompt = provider.tokenize_prompt("what is 2+3?", "")
    big = gen_job(prompt, "a", n=6, max_tokens=40)
    small = gen_job(provider.tokenize_prompt("the answer is", ""), "b", n=1, max_tokens=40)
    engine.submit([big, small])
    ended_at: dict[str, int] = {}
    while engine.busy:
        for job in engine.advance():
            ended_at["a" if job is big else "b"] = engine.decode_calls
    assert big.error is None and small.error is None
    assert all(o is not None and len(o.tokens) == 40 for o in big.outputs)
    # "b" ran next to the first of "a"'s continuations instead of after all six: it ended
    # as soon as its own 40 tokens allowed (its prompt rides with a's first decode).
    assert ended_at["b"] <= 41 < ended_at["a"]
    assert_clean(engine)


def test_jobs_join_between_decodes(make_provider: Any) -> None:
    provider = make_provider(prefix_cache=False)
    engine = provider.engine
    first = gen_job(provider.tokenize_prompt("the answer is", ""), "a", n=2, max_tokens=30)
    engine.submit([first])
    for _ in range(5):
        assert engine.advance(max_steps=1) == []
    late = gen_job(provider.tokenize_prompt("what is 2+3?", ""), "b", n=2, max_tokens=3)
    engine.submit([late])
    ended: list[Job] = []
    while not ended:
        ended = engine.advance()
    assert ended == [late] and not first.done  # joined the running loop and left it first
    while engine.busy:
        engine.advance()
    assert first.done and first.error is None
    assert engine.decode_calls <= 30 + 1  # one loop: the late job added no decode of its own
    assert_clean(engine)


async def test_scoring_rides_in_the_policys_batches(make_provider: Any, tiny_model: Any) -> None:
    provider = make_provider(prefix_cache=False)
    scorer = LlamaCppScorer(tiny_model, n_ctx=2048, n_threads=2)  # joins the provider's engine
    own = LlamaCppScorer(tiny_model, n_ctx=2048, n_threads=2, share_context=False)
    engine = provider.engine
    assert scorer.engine is engine and own.engine is not engine
    batches: list[int] = []
    decode = engine.decode

    def recording(n_tokens: int, sampled: int = 0, padded: int = 0) -> int:
        batches.append(n_tokens - padded)
        return decode(n_tokens, sampled, padded)

    engine.decode = recording  # type: ignore[method-assign]
    request = ScoreRequest(problem="what is 2+3?", solutions=(("2 and 3 is 5\n\n",),))
    result: dict[str, Any] = {}

    async def generate() -> None:
        result["gen"] = await provider.generate(req("the answer is", max_tokens=200))

    async def score() -> None:
        result["score"] = await scorer.score(request)

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(generate)
            while engine.decode_calls < 3:  # one sequence is decoding, one token a batch
                await anyio.lowlevel.checkpoint()
            tg.start_soon(score)
        # The judge prompt was evaluated in batches that also advanced the generation.
        judge = len(scorer.judge_tokens(request.problem, request.solutions[0]))
        assert any(n == judge + 1 for n in batches[1:]), batches[:8]
        assert result["gen"][0].completion_tokens > 100
        [[shared_score]] = result["score"]
        assert shared_score == pytest.approx((await own.score(request))[0][0], abs=1e-4)
        scorer.close()
        assert not engine.busy and engine.users == 1  # the provider's still
    finally:
        scorer.close()
        own.close()


async def test_prompts_sharing_a_prefix_in_flight_evaluate_it_once(make_provider: Any) -> None:
    provider = make_provider()
    head = "the answer is " * 12
    problems = [head + "2 and 3", head + "7 and 8"]
    results: list[Any] = [None, None]

    async def one(i: int) -> None:
        results[i] = await provider.generate(req(problems[i], n=2))

    async with anyio.create_task_group() as tg:  # both arrive while nothing is cached
        for i in range(2):
            tg.start_soon(one, i)
    first, second = (provider.tokenize_prompt(p, "") for p in problems)
    shared = next(i for i, (a, b) in enumerate(zip(first, second, strict=False)) if a != b)
    assert shared > 100
    evaluated = sum(c.prompt_tokens for r in results for c in r)
    assert evaluated == len(first) + len(second) - shared  # the second forked the first's
    assert [len(r) for r in results] == [2, 2]


async def test_the_engine_counts_the_rows_it_sampled_apart_from_prompt_rows(
    make_provider: Any,
) -> None:
    provider = make_provider(n_ctx=1024, n_seq_max=8, prefix_cache=False)
    engine = provider.engine
    async with anyio.create_task_group() as tg:  # 3 + 2 sequences in one decode loop
        tg.start_soon(provider.generate, req(n=3))
        tg.start_soon(provider.generate, req("what is 7+1?", n=2))
    prompt_rows = engine.tokens_evaluated - engine.sampled_rows
    prompts = len(provider.tokenize_prompt("what is 2+3?", "")) + len(
        provider.tokenize_prompt("what is 7+1?", "")
    )
    # Each sequence feeds back all its 12 tokens but the last; its first comes from a prompt row.
    assert engine.sampled_rows == 5 * 11
    assert prompt_rows == prompts  # each prompt once, its children forked from it
    assert 3.0 < engine.sampled_rows / engine.decode_calls <= 5.0  # generation's batch size
    assert engine.decode_s > 0.0


@pytest.mark.parametrize("even", [True, False])
async def test_odd_logits_rows_are_made_even_without_changing_what_is_evaluated(
    make_provider: Any, even: bool
) -> None:
    provider = make_provider(n_ctx=1024, n_seq_max=8, prefix_cache=False)
    engine = provider.engine
    engine.even_outputs = even
    engine.trace = []
    out = await provider.generate(req(n=3, temperature=1.0, seed=7))  # 3 sequences a decode
    trace = engine.trace
    prompt = len(provider.tokenize_prompt("what is 2+3?", ""))
    assert [c.completion_tokens for c in out] == [12, 12, 12]
    assert engine.sampled_rows == 3 * 11
    assert engine.tokens_evaluated == prompt + 3 * 11  # padding is not counted as evaluated
    assert engine.tokens_evaluated == sum(d.rows - d.padded for d in trace)
    decoding = [d for d in trace if d.sampled == 3]
    assert len(decoding) == 11
    if even:  # each 3-row decode got one padding row with logits, on a sequence of its own
        assert all(d.rows == 4 and d.outputs == 4 and d.padded == 1 for d in decoding)
        assert engine.padded_rows == 11
    else:
        assert all(d.rows == 3 and d.outputs == 3 and d.padded == 0 for d in decoding)
        assert engine.padded_rows == 0
    assert_clean(engine)  # the padding rows' ids and cells were given back


async def test_batches_with_prompt_rows_are_not_padded(make_provider: Any) -> None:
    provider = make_provider(n_ctx=1024, n_seq_max=8, prefix_cache=False)
    engine = provider.engine
    engine.trace = []
    alone = make_provider(n_ctx=1024, n_seq_max=8, prefix_cache=False)
    alone.engine.even_outputs = False
    request = req("what is 9+4?", n=2, temperature=1.0, seed=3)
    result: dict[str, Any] = {}

    async def first() -> None:
        result["first"] = await provider.generate(req(n=3, max_tokens=40, temperature=1.0))

    async with anyio.create_task_group() as tg:
        tg.start_soon(first)
        while engine.decode_calls < 2:  # 3 sequences are decoding
            await anyio.lowlevel.checkpoint()
        result["second"] = await provider.generate(request)
    # The second prompt joined 3 sampled rows: 4 rows with logits or more, and no padding.
    joined = [d for d in engine.trace if d.sampled == 3 and d.rows > 3 + d.padded]
    assert joined and all(d.padded == 0 for d in joined)
    assert any(d.sampled == 3 and d.padded == 1 for d in engine.trace)  # before it joined
    # What was sampled does not depend on the padding (exact sampling, a seeded generator a
    # sequence, and each row's logits depend on its own sequence only).
    assert [c.text for c in result["second"]] == [c.text for c in await alone.generate(request)]
    assert_clean(engine)
