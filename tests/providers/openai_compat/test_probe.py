"""The server probe, and what the provider does with it, against the fake server on localhost.

The fake server runs a deterministic "model" (:attr:`FakeApp.continuation`): the text it would
write for a prompt, cut at the first stop string and at ``max_tokens`` words, as a real server
does, so the probe's questions get real answers.
"""

from __future__ import annotations

import json

import anyio
import openai
import pytest
from click.testing import CliRunner

from providers.openai_compat import OpenAIProvider
from providers.openai_compat.backend import openai_backend
from providers.openai_compat.probe import STEP_PROMPT, cached_probe, probe_server
from providers.openai_compat.probe_cli import probe
from rebase_agent import ProviderError, StepRequest
from rebase_agent.presets import PRESETS
from tests.providers.openai_compat.fake_models import step_writer
from tests.providers.openai_compat.fake_server import FakeApp, Flavor, Reply, Sample, serve

pytestmark = pytest.mark.anyio


def model(prefill: bool = True) -> FakeApp:
    """A fake model that writes a step then a blank line, counts on, and says Yes."""
    return step_writer(prefill)


async def test_probe_reads_a_llama_server_like_server() -> None:
    app = model()
    app.flavor = Flavor(server="llama_server", stop_style="llama_server", usage="one_choice")
    async with serve(app) as url, openai.AsyncOpenAI(base_url=url, api_key="k") as client:
        report = await probe_server(client, "gemma-3-270m")
    assert report.fatal is None
    assert report.server == "llama_server" and "/props" in report.server_seen
    assert (report.completions, report.chat, report.n) == ("yes", "yes", "yes")
    assert report.usage == "one_choice" and report.tokenizer == "tokenize_content"
    assert report.stop == "trimmed" and report.stop_field == "stop_type"
    assert report.completions_top_logprobs == 2  # the fake's Yes and No
    assert report.prefix_cache == "yes"
    assert report.model_kind == "base"
    assert report.options() == {
        "model": "gemma-3-270m",
        "base_url": url,
        "server": "llama_server",
        "mode": "completions",
        "template": "few_shot_steps",
        "scorer": "judge",
        "scorer_api": "completions",
    }
    table = report.table()
    assert "usage per choice" in table and "no: counts one choice" in table


async def test_probe_on_vllm_sees_stop_strings_kept_and_usage_per_choice() -> None:
    app = model()
    app.flavor = Flavor(server="vllm", stop_style="vllm")
    async with serve(app) as url, openai.AsyncOpenAI(base_url=url, api_key="k") as client:
        report = await probe_server(client, "Qwen2.5-Math-7B-Instruct")
    assert report.server == "vllm"
    assert report.stop == "kept" and report.stop_field == "stop_reason"
    assert report.usage == "every_choice"
    assert report.chat_prefill == "yes"  # the fake continued "1, ..., 7," with " 8"
    assert report.model_kind == "chat" and report.mode == "chat_prefill"
    assert report.options()["template"] == "chat_steps"
    prefill = [
        r
        for r in app.paths("/v1/chat/completions")
        if r.body["messages"][-1]["role"] == "assistant"
    ]
    assert prefill and prefill[0].body["continue_final_message"] is True
    assert prefill[0].body["add_generation_prompt"] is False


async def test_probe_on_a_chat_only_api_recommends_the_next_step_mode() -> None:
    app = model(prefill=False)
    app.flavor = Flavor(completions=False, stop_style="none")
    async with serve(app) as url, openai.AsyncOpenAI(base_url=url, api_key="k") as client:
        report = await probe_server(client, "m")
    assert report.fatal is None
    assert (report.completions, report.chat, report.chat_prefill) == ("no", "yes", "no")
    assert report.mode == "chat_next_step" and report.preset == "chat_steps"


async def test_a_server_that_answers_nothing_is_fatal_with_a_clear_message() -> None:
    app = FakeApp()
    app.flavor = Flavor(completions=False)
    app.script = lambda prompt, i: Sample("x")

    async def refuse(path: str, headers: dict[str, str], body: object) -> Reply:
        return Reply(404, {"error": {"message": f"no route {path}"}})

    app.handle = refuse  # type: ignore[method-assign]
    async with serve(app) as url, openai.AsyncOpenAI(base_url=url, api_key="k") as client:
        report = await probe_server(client, "m")
    assert report.fatal is not None
    assert "neither /completions nor /chat/completions" in report.fatal


async def test_an_unreachable_server_is_fatal_and_the_key_never_shows() -> None:
    key = "sk-secret-probe-key-123456789"
    async with openai.AsyncOpenAI(
        base_url="http://127.0.0.1:9/v1", api_key=key, max_retries=0, timeout=5
    ) as client:
        report = await probe_server(client, "m", secret=key)
    assert report.fatal is not None and "cannot reach http://127.0.0.1:9/v1" in report.fatal
    assert key not in report.model_dump_json()


async def test_probe_command_prints_the_table_and_the_options() -> None:
    app = model()
    app.flavor = Flavor(server="llama_server", stop_style="llama_server", usage="one_choice")
    async with serve(app) as url:
        args = ["--option", f"base_url={url}", "--option", "model=gemma"]
        out = await anyio.to_thread.run_sync(lambda: CliRunner().invoke(probe, args))
        as_json = await anyio.to_thread.run_sync(
            lambda: CliRunner().invoke(probe, [*args, "--json"])
        )
    assert out.exit_code == 0, out.output
    assert "raw /completions" in out.stdout and "prefix cache" in out.stdout
    assert "--option template=few_shot_steps" in out.stdout
    assert "--option server=llama_server" in out.stdout
    assert json.loads(as_json.stdout)[0]["usage"] == "one_choice"


async def test_probe_command_exits_non_zero_when_no_search_can_run() -> None:
    args = ["--option", "base_url=http://127.0.0.1:9/v1", "--option", "model=m", "--timeout", "5"]
    out = await anyio.to_thread.run_sync(lambda: CliRunner().invoke(probe, args))
    assert out.exit_code == 1
    assert "error: no search can run: cannot reach" in out.stderr
    missing = await anyio.to_thread.run_sync(lambda: CliRunner().invoke(probe, []))
    assert missing.exit_code == 2 and "model=NAME" in missing.output


# Issue 12, item 3: with n > 1, llama-server's usage.completion_tokens counts one choice.


def different_lengths(prompt: str, i: int) -> Sample:
    return Sample(["Step one.", "A much longer second step with many words.", "Third."][i])


async def test_llama_server_usage_is_counted_per_choice_not_split() -> None:
    app = FakeApp(Flavor(server="llama_server", stop_style="llama_server", usage="one_choice"))
    app.script = different_lengths
    # n sent (supports_n=True): on llama-server the default is one request per choice.
    async with (
        serve(app) as url,
        OpenAIProvider("m", url, server="llama_server", supports_n=True) as provider,
    ):
        got = await provider.generate(StepRequest(problem="p", n=3))
    # What the server generated, choice by choice (the fake counts words as tokens).
    assert [c.completion_tokens for c in got] == [2, 8, 1]
    assert sum(c.completion_tokens for c in got) == app.generated_tokens == 11
    assert app.usage_sent["completion_tokens"] == 1  # the server's own count: one choice
    assert len(app.paths("/tokenize")) == 3


async def test_a_probed_server_that_counts_one_choice_is_counted_per_choice() -> None:
    app = FakeApp(Flavor(server="llama_server", stop_style="llama_server", usage="one_choice"))
    app.continuation = lambda prompt, i: (
        [" Step one.", " A much longer second step with many words.", " Third."][i % 3]
        + "\n\nThe answer is 4.",
        True,
    )
    async with serve(app) as url, OpenAIProvider("m", url, probe=True) as provider:
        got = await provider.generate(StepRequest(problem="fresh problem", n=3))
        assert provider.report is not None and provider.report.usage == "one_choice"
    assert [c.completion_tokens for c in got] == [2, 8, 1]


async def test_without_a_tokenizer_the_per_choice_count_is_estimated_from_lengths() -> None:
    app = FakeApp(Flavor(stop_style="none", usage="one_choice"))
    app.script = different_lengths
    async with (
        serve(app) as url,
        OpenAIProvider("m", url, server="llama_server", supports_n=True) as provider,
    ):
        got = await provider.generate(StepRequest(problem="p", n=3))
        endpoint = provider.endpoints.endpoints[0]
        assert endpoint.tokenizer_failed  # no /tokenize on this server: estimated from now on
    counts = [c.completion_tokens for c in got]
    # The one choice's count (1, the last choice's) scaled by each text's length.
    assert counts == [1, 2, 1]


async def test_a_correct_server_is_trusted_and_split() -> None:
    app = FakeApp(Flavor(stop_style="vllm"))
    app.script = different_lengths
    async with serve(app) as url, OpenAIProvider("m", url, server="vllm") as provider:
        got = await provider.generate(StepRequest(problem="p", n=3))
    assert sum(c.completion_tokens for c in got) == app.usage_sent["completion_tokens"] == 11
    assert not app.paths("/tokenize")


async def test_the_probe_picks_the_few_shot_preset_for_a_base_model_once() -> None:
    app = model()
    app.flavor = Flavor(server="llama_server", stop_style="llama_server", usage="one_choice")
    async with serve(app) as url:
        provider, _ = openai_backend(model="gemma-3-270m-base", base_url=url)
        async with provider:
            await provider.prepare()
            assert provider.mode == "completions" and provider.server == "llama_server"
            assert provider.preset is PRESETS["few_shot_steps"]
            assert provider.search_defaults == PRESETS["few_shot_steps"].search_defaults
            probes = len(app.requests)
            await provider.generate(StepRequest(problem="What is 6 * 7?", steps=("Step 1:",), n=2))
        # Probed once, cached for the process: a second provider sends no probe.
        again, _ = openai_backend(model="gemma-3-270m-base", base_url=url)
        async with again:
            await again.prepare()
    sent = app.paths("/v1/completions")[-1].body
    assert sent["prompt"].startswith("Question: What is 8 * 6?")
    assert sent["prompt"].endswith("Question: What is 6 * 7?\nAnswer:\n\nStep 1:")
    assert sent["top_k"] == 40
    generation = [r for r in app.requests[probes:] if r.path == "/v1/completions"]
    assert len(generation) == 1


async def test_a_fatal_probe_fails_the_first_request_with_its_reason() -> None:
    async with OpenAIProvider("m", "http://127.0.0.1:9/v1", probe=True, timeout_s=5) as provider:
        with pytest.raises(ProviderError, match="probe: cannot reach"):
            await provider.generate(StepRequest(problem="p"))


async def test_presets_and_modes_that_do_not_fit_are_refused() -> None:
    with pytest.raises(ValueError, match=r"few_shot_steps.*needs a chat preset"):
        openai_backend(model="m", template="few_shot_steps", mode="chat_next_step")
    with pytest.raises(ValueError, match="template must be a preset name"):
        openai_backend(model="m", template="nope")
    with pytest.raises(ValueError, match="probe must be 'on' or 'off'"):
        openai_backend(model="m", probe="maybe")
    with pytest.raises(ValueError, match="mode=auto and server=auto need probe=on"):
        openai_backend(model="m", probe="off", mode="auto")


async def test_cached_probe_shares_one_probe_between_concurrent_callers() -> None:
    app = model()
    async with serve(app) as url, openai.AsyncOpenAI(base_url=url, api_key="k") as client:
        reports = []

        async def one() -> None:
            reports.append(await cached_probe(client, "shared-model"))

        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(one)
    assert reports[0] is reports[1] is reports[2]
    n_checks = [r for r in app.paths("/v1/completions") if r.body.get("n") == 3]
    assert len(n_checks) == 1 and n_checks[0].body["prompt"] == STEP_PROMPT  # one probe


async def test_a_mode_the_user_chose_gets_a_preset_of_its_kind_not_the_probes() -> None:
    # An instruct model that prefills: the probe would use chat_prefill with chat_steps, but
    # the user asked for raw completions, which take a raw (base) prompt.
    app = model(prefill=True)
    async with (
        serve(app) as url,
        OpenAIProvider("m-instruct", url, mode="completions", server="auto", probe=True) as p,
    ):
        await p.prepare()
        assert p.report is not None and p.report.preset == "chat_steps"
        assert p.mode == "completions" and p.preset is PRESETS["few_shot_steps"]


async def test_the_judge_reads_logprobs_where_the_probe_finds_them() -> None:
    # A base model on llama-server: top logprobs on /completions, so the judge reads them there.
    app = model()
    app.flavor = Flavor(server="llama_server", stop_style="llama_server", usage="one_choice")
    async with serve(app) as url:
        _, judge = openai_backend(model="gemma-3-270m-base", base_url=url)
        async with judge:
            assert judge.api == "chat"  # not known before the probe
            await judge.prepare()
            assert judge.api == "completions"
        _, fixed = openai_backend(model="gemma-3-270m-base", base_url=url, scorer_api="chat")
        async with fixed:
            await fixed.prepare()
            assert fixed.api == "chat"  # what the user named wins
