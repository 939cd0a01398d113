"""The llama.cpp policy: :class:`LlamaCppProvider`."""

from __future__ import annotations

import os
from typing import Any

import anyio
import anyio.to_thread

from providers.llamacpp._engine import Engine, EngineUser, check_sizes
from providers.llamacpp._gather import Batcher
from providers.llamacpp._jobs import GenJob
from providers.llamacpp.model import LlamaModel
from providers.llamacpp.repack import Repack
from providers.llamacpp.templates import PromptTemplate, resolve_template
from rebase_agent.allocation import split_evenly
from rebase_agent.exceptions import ProviderError
from rebase_agent.protocols import StepCompletion, StepRequest

__all__ = ("LlamaCppProvider",)


class LlamaCppProvider(EngineUser):
    """A REBASE policy on a local GGUF, with batched multi-sequence decoding.

    Every request joins one continuous decode loop (every expansion of a depth, and those of
    concurrent problems, at whatever depth): it starts at the loop's next step, not after the
    requests already running; each prompt is evaluated once, its ``n`` children fork its KV
    cells and advance one token per ``llama_decode`` with everyone else's; a finished step
    leaves the batch at once and waiting work takes its place; prefixes already evaluated (the
    parent of a node expanded again, the steps of earlier depths) are reused from the cache.
    When the context is full, problems take turns at admission. A request that cannot run (its
    prompt is larger than the context) fails alone, with its own error.

    ``prompt_tokens`` of a :class:`~rebase_agent.StepCompletion` counts the prompt tokens this
    request actually evaluated, split evenly over its ``n`` completions; a reused cached prefix
    counts 0. ``completion_tokens`` counts the tokens sampled, the EOS token included.

    Args:
        model: A GGUF path, or a loaded :class:`LlamaModel` to share with a scorer.
        n_gpu_layers: Layers to offload to the GPU when ``model`` is a path (``-1``: all).
        n_ctx: KV cells shared by all sequences. Work is admitted while prompt + ``max_tokens``
            per sequence fits; the rest waits (one log line says so).
        n_seq_max: Sequences at once (running, evaluating or cached). A sequence id costs no
            KV memory (the cells are shared), and every cached prefix holds one, so too few ids
            evict the steps of one depth before the next can fork from them: 8 chain searches
            at budget 16 (Gemma 3 270M, 2 cores, ``n_ctx=8192``) evaluated 3,755 prompt tokens
            with 32 ids and 764 with 128; the judged eval of ``benchmarks/local_throughput.py``
            (``n_ctx=16384``) went from 46 to 60 generated tokens/s.
        n_batch: Most tokens per ``llama_decode``.
        n_ubatch: Rows llama.cpp computes at once (default: 32 on the CPU, 512 with the model
            on a GPU; see :data:`~providers.llamacpp._engine.CPU_UBATCH` for why, and
            ``benchmarks/decode_mix.py`` to measure it on another machine).
        even_outputs: Pad a decode of an odd number (3 or more) of sampled rows with one row,
            which llama.cpp's CPU matrix products run faster (see
            :attr:`Engine.even_outputs <providers.llamacpp._engine.Engine.even_outputs>`).
        n_threads: CPU threads (default: all cores; one-token decodes use half).
        template: Prompt template (see :func:`~providers.llamacpp.templates.resolve_template`).
        chat: With ``template=None``, use the model's own chat template.
        prefix_cache: Keep finished sequences' KV cells for later prompts that share a prefix.
        max_cached_cells: Most KV cells held only by cached prefixes (default ``n_ctx // 4``);
            every decode attends over all occupied cells, so a bigger cache costs speed.
        top_k: Sample among the ``top_k`` most likely tokens only (0, the default: the whole
            vocabulary, as REBASE does). The default draws exactly from ``softmax(logits / T)``,
            all sequences of a decode at once (:mod:`providers.llamacpp._sampling`); a top-k
            of a few dozen (llama.cpp's sampler chain) is cheaper still on large vocabularies
            (Gemma 3: 262k tokens) but drops the tail, changing the distribution. Requests
            with ``top_p < 1`` or temperature 0 use llama.cpp's sampler chain.
        verbose: Print llama.cpp's own log.
        repack: How the CPU weights load when ``model`` is a path (see :class:`LlamaModel`).

    Example::

        provider = LlamaCppProvider("model.gguf", n_ctx=8192, n_seq_max=128)
        steps = await provider.generate(StepRequest(problem="1+1?", n=4, seed=0))
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | LlamaModel,
        *,
        n_gpu_layers: int = -1,
        n_ctx: int = 8192,
        n_seq_max: int = 128,
        n_batch: int = 512,
        n_ubatch: int | None = None,
        even_outputs: bool = True,
        n_threads: int | None = None,
        template: str | PromptTemplate | None = None,
        chat: bool = False,
        prefix_cache: bool = True,
        max_cached_cells: int | None = None,
        top_k: int = 0,
        verbose: bool = False,
        repack: Repack | None = None,
    ) -> None:
        check_sizes(n_seq_max=n_seq_max, n_ubatch=n_ubatch)
        self.model = LlamaModel.share_or_load(
            model, n_gpu_layers=n_gpu_layers, verbose=verbose, repack=repack
        )
        self.search_defaults: dict[str, Any] = {}
        """:class:`~rebase_agent.RebaseConfig` fields recommended for this provider's prompt
        (read by :func:`rebase_agent.backends.search_defaults`); empty unless a backend sets
        them, as the embedded default does."""
        self.engine = Engine(
            self.model,
            n_ctx=n_ctx,
            n_seq_max=n_seq_max,
            n_batch=n_batch,
            n_ubatch=n_ubatch,
            even_outputs=even_outputs,
            n_threads=n_threads,
            prefix_cache=prefix_cache,
            max_cached_cells=max_cached_cells,
            shareable=True,
        )
        self.template = resolve_template(
            template,
            chat=chat,
            model_template=self.model.chat_template,
            token_text=self.model.token_text,
            bos=self.model.bos,
            eos=self.model.eos,
        )
        self.top_k = top_k
        self._batcher = Batcher(self.engine, self.model.lock)

    def tokenize_prompt(self, problem: str, solution: str) -> list[int]:
        """The prompt tokens for a partial solution (call in a worker thread)."""
        text = self.template.render(problem, solution)
        bos = self.model.token_text(self.model.bos)
        return self.model.tokenize(text, add_bos=not (bos and text.startswith(bos)))

    async def count_prompt_tokens(self, problem: str) -> int:
        """Tokens of the prompt for ``problem`` with no steps: what the first request of a
        search evaluates with nothing cached (``prompt_tokens`` counts only the part the cache
        missed; :class:`~rebase_agent.protocols.PromptCounter`)."""
        tokens = await anyio.to_thread.run_sync(self.tokenize_prompt, problem, "")
        return len(tokens)

    async def generate(self, request: StepRequest) -> list[StepCompletion]:
        """Sample ``request.n`` next steps; see the class docstring for the token counts.

        Raises:
            ProviderError: The prompt does not fit the context, or llama.cpp failed.
        """
        problem, solution = request.problem, "".join(request.steps)

        def prepare(job: GenJob) -> None:  # in the worker thread
            job.prompt = self.tokenize_prompt(problem, solution)

        job = GenJob(
            prompt=[],
            prepare=prepare,
            n=request.n,
            max_tokens=request.max_tokens,
            stop=tuple(s.encode("utf-8") for s in request.stop),
            temperature=request.temperature,
            top_p=request.top_p,
            top_k=self.top_k,
            seed=request.seed,
            owner=problem,
        )
        await self._batcher.submit([job])
        if job.error is not None:
            if isinstance(job.error, ProviderError):
                raise ProviderError(str(job.error)) from job.error
            raise ProviderError(f"llama.cpp generation failed: {job.error}") from job.error
        shares = split_evenly(job.prompt_evaluated, request.n)
        out: list[StepCompletion] = []
        for output, share in zip(job.outputs, shares, strict=True):
            if output is None:
                why = "the request was cancelled" if job.cancelled else "an engine bug"
                raise ProviderError(f"llama.cpp returned fewer completions than asked: {why}")
            out.append(
                StepCompletion(
                    text=output.text,
                    finish_reason=output.finish_reason,
                    prompt_tokens=share,
                    completion_tokens=len(output.tokens),
                )
            )
        return out

    def __repr__(self) -> str:
        return f"LlamaCppProvider({self.model!r}, n_ctx={self.engine.n_ctx})"

    def __getstate__(self) -> Any:  # pragma: no cover - a context cannot be pickled
        raise TypeError("LlamaCppProvider holds a llama.cpp context and cannot be pickled")
