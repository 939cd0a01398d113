"""Providers and PRM scorers for OpenAI-compatible servers (vLLM, SGLang, llama-server, Ollama,
OpenAI), over the async ``openai`` client.

- :class:`OpenAIProvider`: the policy, in modes (:data:`Mode`) ``completions``,
  ``chat_prefill``, ``chat_next_step`` and ``ollama_raw``, for a server flavour
  (:data:`Server`), over one or several replicas.
- :class:`QwenPRMScorer`, :class:`MathShepherdPoolingScorer`: PRMs on vLLM ``/pooling``.
- :class:`MathShepherdScorer`, :class:`RLHFlowScorer`, :class:`JudgeScorer`: generative PRMs and
  LLM judges read from ``top_logprobs``.
- :class:`FormatTemplate`, :class:`JinjaChatTemplate` (the core's, as the llama.cpp provider
  takes them) and :class:`ServerChatTemplate` (the server's own): the prompt of the raw modes.
- :class:`RetryPolicy`, :class:`EndpointPool`: retries and replicas, shared by all of them;
  :class:`EndpointHTTPError` and :class:`EndpointConnectionError`: what a failed request raises.
- :func:`probe_server`: what a server supports (``rebase-agent probe``), as a
  :class:`ProbeReport`.

The machinery behind them (endpoints, requests, the PRM toolkit of :mod:`rebase_agent.prm`)
is imported from its own module.

Example:
    >>> from providers.openai_compat import OpenAIProvider, QwenPRMScorer
    >>> provider = OpenAIProvider("Qwen/Qwen2.5-Math-1.5B-Instruct", "http://localhost:8000/v1",
    ...                           server="vllm")
    >>> scorer = QwenPRMScorer("Qwen/Qwen2.5-Math-PRM-7B", "http://localhost:8001/v1")
"""

from providers.openai_compat.endpoints import EndpointPool as EndpointPool
from providers.openai_compat.errors import EndpointConnectionError as EndpointConnectionError
from providers.openai_compat.errors import EndpointHTTPError as EndpointHTTPError
from providers.openai_compat.judge import JudgeScorer as JudgeScorer
from providers.openai_compat.logprob_scorers import MathShepherdScorer as MathShepherdScorer
from providers.openai_compat.logprob_scorers import RLHFlowScorer as RLHFlowScorer
from providers.openai_compat.pooling import MathShepherdPoolingScorer as MathShepherdPoolingScorer
from providers.openai_compat.pooling import QwenPRMScorer as QwenPRMScorer
from providers.openai_compat.probe import ProbeReport as ProbeReport
from providers.openai_compat.probe import probe_server as probe_server
from providers.openai_compat.provider import Mode as Mode
from providers.openai_compat.provider import OpenAIProvider as OpenAIProvider
from providers.openai_compat.provider import Server as Server
from providers.openai_compat.retry import RetryPolicy as RetryPolicy
from providers.openai_compat.templates import FormatTemplate as FormatTemplate
from providers.openai_compat.templates import JinjaChatTemplate as JinjaChatTemplate
from providers.openai_compat.templates import PromptTemplate as PromptTemplate
from providers.openai_compat.templates import ServerChatTemplate as ServerChatTemplate

__all__ = (
    "EndpointConnectionError",
    "EndpointHTTPError",
    "EndpointPool",
    "FormatTemplate",
    "JinjaChatTemplate",
    "JudgeScorer",
    "MathShepherdPoolingScorer",
    "MathShepherdScorer",
    "Mode",
    "OpenAIProvider",
    "ProbeReport",
    "PromptTemplate",
    "QwenPRMScorer",
    "RLHFlowScorer",
    "RetryPolicy",
    "Server",
    "ServerChatTemplate",
    "probe_server",
)
