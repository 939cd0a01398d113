"""The batched llama.cpp engine on a tiny random-weight GGUF (no download, a few seconds)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import anyio
import pytest

pytest.importorskip("llama_cpp")

from providers.llamacpp import LlamaCppProvider
from providers.llamacpp._jobs import GenJob
from rebase_agent import ProviderError, StepCompletion, StepRequest

pytestmark = [pytest.mark.anyio, pytest.mark.llama]


async def gather(provider: LlamaCppProvider, requests: list[StepRequest]) -> list[Any]:
    """Send ``requests`` concurrently (they share one decode loop); results in order."""
    results: list[Any] = [None] * len(requests)

    async def one(i: int) -> None:
        results[i] = await provider.generate(requests[i])

    async with anyio.create_task_group() as tg:
        for i in range(len(requests)):
            tg.start_soon(one, i)
    return results


def req(problem: str = "what is 2+3?", **kw: Any) -> StepRequest:
    kw.setdefault("max_tokens", 12)
    kw.setdefault("stop", ())
    return StepRequest(problem=problem, **kw)


async def test_exactly_n_completions_each(make_provider: Any) -> None:
    provider = make_provider()
    requests = [req(f"problem {i}", n=n, seed=i) for i, n in enumerate((1, 3, 5, 2))]
    results = await gather(provider, requests)
    assert [len(r) for r in results] == [1, 3, 5, 2]
    for completions in results:
        for c in completions:
            assert isinstance(c, StepCompletion)
            assert c.finish_reason == "length" and c.completion_tokens == 12
    assert provider.engine.decode_calls <= 13  # one shared loop: prompts + 12 steps at most


async def test_stop_string_is_kept_and_ends_the_step(make_provider: Any) -> None:
    provider = make_provider()
    [free] = await provider.generate(req(max_tokens=24, temperature=0))
    text = free.text
    start = next(i for i in range(3, len(text) - 2) if "\ufffd" not in text[i : i + 2])
    stop = text[start : start + 2]
    [stopped] = await provider.generate(req(max_tokens=24, temperature=0, stop=(stop, "\n\n")))
    assert stopped.finish_reason == "step"
    assert stopped.text == text[: text.index(stop) + len(stop)]
    assert stopped.completion_tokens <= free.completion_tokens


async def test_eos_finish(tiny_eos_gguf: Path) -> None:
    provider = LlamaCppProvider(tiny_eos_gguf, n_ctx=1024, n_seq_max=8, n_threads=2)
    try:
        out = await provider.generate(req(n=4, max_tokens=64, temperature=0.5, seed=0))
    finally:
        provider.close()
        provider.model.close()
    assert [c.finish_reason for c in out] == ["eos"] * 4
    assert all(c.completion_tokens < 64 and "</s>" not in c.text for c in out)


def run_tokens(provider: LlamaCppProvider, prompt: list[int], **kw: Any) -> list[tuple[int, ...]]:
    job = GenJob(prompt=prompt, stop=(), top_p=kw.pop("top_p", 1.0), **kw)
    provider.engine.run([job])
    assert job.error is None
    return [o.tokens for o in job.outputs if o is not None]


async def test_greedy_batched_equals_sequential_and_llama(
    make_provider: Any, tiny_gguf: Path
) -> None:
    batched = make_provider()
    sequential = make_provider(prefix_cache=False)
    problems = ["what is 2+3?", "the answer is", "Question: 7 and 8"]
    results = await gather(batched, [req(p, n=4, temperature=0, seed=1) for p in problems])
    for problem, completions in zip(problems, results, strict=True):
        [alone] = await sequential.generate(req(problem, n=1, temperature=0, seed=1))
        assert [c.text for c in completions] == [alone.text] * 4
    # Token for token against llama-cpp-python's own high-level greedy loop.
    from providers.llamacpp.repack import load_llama

    llm = load_llama(str(tiny_gguf), n_ctx=256, n_threads=2, verbose=False)
    prompt = batched.tokenize_prompt(problems[0], "")
    reference: list[int] = []
    for token in llm.generate(prompt, temp=0.0):
        reference.append(token)
        if len(reference) == 12:
            break
    assert (
        run_tokens(batched, prompt, n=2, max_tokens=12, temperature=0.0, seed=None)
        == [tuple(reference)] * 2
    )


async def test_forked_children_never_see_each_other(make_provider: Any) -> None:
    provider = make_provider()
    alone = make_provider(prefix_cache=False)
    prompt = provider.tokenize_prompt("what is 2+3?", "")
    children = run_tokens(provider, prompt, n=4, max_tokens=16, temperature=1.0, seed=10)
    assert len(set(children)) > 1  # different seeds, different samples
    for i, tokens in enumerate(children):
        # Child i samples with seed 10 + i: the same as a lone sequence seeded so.
        assert run_tokens(alone, prompt, n=1, max_tokens=16, temperature=1.0, seed=10 + i) == [
            tokens
        ]


async def test_top_k_one_is_greedy(make_provider: Any) -> None:
    greedy = await make_provider().generate(req(n=1, temperature=0))
    top1 = await make_provider(top_k=1).generate(req(n=3, temperature=1.0, seed=4))
    assert [c.text for c in top1] == [greedy[0].text] * 3


async def test_seeded_sampling_is_reproducible_across_batching(make_provider: Any) -> None:
    provider = make_provider()
    requests = [req(f"p{i}", n=3, temperature=0.9, top_p=0.9, seed=5) for i in range(3)]
    together = await gather(provider, requests)
    fresh = make_provider(prefix_cache=False)
    apart = [await fresh.generate(r) for r in requests]
    assert [[c.text for c in r] for r in together] == [[c.text for c in r] for r in apart]


async def test_cells_are_freed(make_provider: Any) -> None:
    provider = make_provider(prefix_cache=False)
    await gather(provider, [req(f"p{i}", n=3, seed=i) for i in range(3)])
    engine = provider.engine
    assert engine.pool.ledger.used() == 0 and engine.pool.reserved == 0
    assert engine.pool.n_free == engine.n_seq_max
    assert all(engine.seq_pos_max(s) == -1 for s in range(engine.n_seq_max))

    cached = make_provider()
    await gather(cached, [req(f"p{i}", n=3, seed=i) for i in range(3)])
    assert cached.engine.pool.entries  # finished sequences kept as prefixes ...
    cached.engine.clear_cache()  # ... until evicted
    assert all(cached.engine.seq_pos_max(s) == -1 for s in range(cached.engine.n_seq_max))
    assert cached.engine.pool.ledger.used() == 0


async def test_prefix_reused_across_depths(make_provider: Any) -> None:
    cached = make_provider()
    plain = make_provider(prefix_cache=False)
    [step1] = await cached.generate(req(n=1, temperature=0, max_tokens=10))
    deeper = req(steps=(step1.text,), n=2, temperature=0, max_tokens=10)
    full = len(cached.tokenize_prompt(deeper.problem, step1.text))
    out = await cached.generate(deeper)
    reference = await plain.generate(deeper)
    assert sum(c.prompt_tokens for c in out) < full // 2  # only the tail was evaluated
    assert sum(c.prompt_tokens for c in reference) == full  # all of it, once for both
    assert [c.text for c in out] == [c.text for c in reference]


async def test_small_context_runs_fewer_at_once(
    make_provider: Any, caplog: pytest.LogCaptureFixture
) -> None:
    small = make_provider(n_ctx=256, n_seq_max=4)
    big = make_provider()
    request = req(n=8, max_tokens=60, temperature=0.0)
    with caplog.at_level(logging.INFO, logger="providers.llamacpp"):
        out = await small.generate(request)
    assert len(out) == 8 and sum(c.completion_tokens for c in out) > 256  # > the context
    assert "context full" in caplog.text
    assert [c.text for c in out] == [c.text for c in await big.generate(request)]
    assert small.engine.pool.reserved == 0


async def test_rows_computed_at_once_are_the_callers_choice(
    make_provider: Any, tiny_model: Any
) -> None:
    from providers.llamacpp import LlamaCppScorer
    from providers.llamacpp._engine import CPU_UBATCH
    from providers.llamacpp._lib import llama_cpp

    on_gpu = bool(llama_cpp.llama_supports_gpu_offload()) and tiny_model.n_gpu_layers != 0
    assert make_provider().engine.n_ubatch == (512 if on_gpu else CPU_UBATCH)
    assert make_provider(n_ubatch=4096).engine.n_ubatch == 512  # at most n_batch
    provider = make_provider(n_ubatch=8)
    assert provider.engine.n_ubatch == 8
    # A 40-token prompt and 3 children run as ubatches of 8 rows: every completion comes back.
    prompt = " ".join(["seven"] * 40)
    results = await gather(provider, [req(prompt, n=3, seed=1), req("short", n=2, seed=2)])
    assert [len(r) for r in results] == [3, 2]
    assert all(
        c.finish_reason in ("length", "eos") and c.completion_tokens for r in results for c in r
    )
    assert provider.engine.tokens_evaluated > 40
    scorer = LlamaCppScorer(tiny_model, n_ctx=512, n_seq_max=4, n_ubatch=16, share_context=False)
    try:
        assert scorer.engine.n_ubatch == 16
    finally:
        scorer.close()
    with pytest.raises(ValueError, match="n_ubatch must be at least 1, got 0"):
        make_provider(n_ubatch=0)


def test_sizes_no_context_can_take_are_refused_before_a_model_loads(tmp_path: Path) -> None:
    from providers.llamacpp import LlamaCppScorer, local_models

    absent = tmp_path / "absent.gguf"  # loading it first would raise FileNotFoundError
    with pytest.raises(ValueError, match="n_ubatch must be at least 1, got 0"):
        LlamaCppProvider(absent, n_ubatch=0)
    with pytest.raises(ValueError, match=r"n_seq_max must be at least 2 .*, got 1"):
        LlamaCppScorer(absent, n_seq_max=1)
    with pytest.raises(ValueError, match="n_ubatch must be at least 1, got -4"):
        local_models(str(absent), n_ubatch=-4)


async def test_prompt_longer_than_context_raises(make_provider: Any) -> None:
    provider = make_provider(n_ctx=256, n_seq_max=4)
    with pytest.raises(ProviderError, match="does not fit"):
        await provider.generate(req("word " * 400))
    [ok] = await provider.generate(req(temperature=0))  # the engine is still usable
    assert ok.finish_reason in ("length", "eos") and ok.text


async def test_cancelled_request_frees_its_sequences(make_provider: Any) -> None:
    provider = make_provider(n_ctx=16384, prefix_cache=False)
    with anyio.move_on_after(0.1):
        await gather(provider, [req(n=4, max_tokens=2000, temperature=0)])
    # The caller started the decode loop itself; cancelling it stopped the loop early.
    assert provider.engine.tokens_evaluated < 4 * 1000
    assert provider.engine.pool.ledger.used() == 0
    assert provider.engine.pool.n_free == provider.engine.n_seq_max
    [ok] = await provider.generate(req(temperature=0))
    assert ok.finish_reason in ("length", "eos") and ok.text


_CLOSE_WHILE_DECODING = """
import sys, threading, time
from providers.llamacpp import LlamaCppProvider, LlamaModel
from providers.llamacpp._jobs import GenJob

model = LlamaModel(sys.argv[1])
for attempt in range(8):  # each attempt closes at a different point of a step
    provider = LlamaCppProvider(model, n_ctx=2048, n_seq_max=8, n_threads=1)
    engine = provider.engine
    prompt = provider.tokenize_prompt("what is 2+3?", "")
    job = GenJob(prompt=prompt, n=8, max_tokens=1500, stop=(), temperature=1.0, top_p=1.0, seed=0)
    engine.submit([job])
    worker = threading.Thread(target=engine.advance)  # as the batcher runs it: a worker thread
    worker.start()
    while engine.decode_calls < 2 + attempt:
        time.sleep(0.0002 * attempt)
    provider.close()  # from another thread, mid-decode: as a torn-down event loop's cleanup
    worker.join()
    assert job.done and "closed" in str(job.error), job.error
    assert engine.decode_calls < 1000, engine.decode_calls
print("ok")
"""


def test_closing_while_another_thread_decodes_waits_for_it(tmp_path: Path) -> None:
    """Found as a segfault: a test timed out mid-solve, asyncio cancelled every task natively
    (anyio's shield cannot stop that), the decode kept running in its worker thread and the
    provider's close freed the context under it. Now close waits for the step in flight and
    the job fails as closed. In a subprocess, so that a crash is a failed test."""
    import os
    import subprocess
    import sys

    from providers.llamacpp.testing import write_tiny_llama

    # Wider than the tiny model, so that a decode takes most of a step and the close lands in it.
    model = write_tiny_llama(tmp_path / "wide.gguf", n_embd=512, n_ff=1024, n_head=8, n_layer=4)
    root = Path(__file__).resolve().parents[3]
    env = dict(os.environ, PYTHONPATH=str(root))
    proc = subprocess.run(
        [sys.executable, "-c", _CLOSE_WHILE_DECODING, str(model)],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr[-2000:]}"
    assert proc.stdout.startswith("ok")


async def test_the_prompt_count_is_what_an_empty_cache_evaluates(make_provider: Any) -> None:
    from rebase_agent.calculator import CalculatorProvider

    provider = make_provider()
    problem = "what is 12 times 12?"
    count = await provider.count_prompt_tokens(problem)
    assert count == len(provider.tokenize_prompt(problem, "")) > 5
    first = await provider.generate(req(problem, n=3, seed=0))
    assert sum(c.prompt_tokens for c in first) == count  # nothing cached yet: all of it
    again = await provider.generate(req(problem, n=3, seed=1))
    assert sum(c.prompt_tokens for c in again) < count  # cached now: reported drops, count not
    assert await CalculatorProvider(provider).count_prompt_tokens(problem) == count
