"""rebase-agent: REBASE (reward balanced search) over reasoning steps, async and pluggable.

Start with :func:`solve`; implement :class:`Provider` for a policy and :class:`Scorer` for a
process reward model; :mod:`rebase_agent.testing` has in-process ones for tests.
"""

from rebase_agent.allocation import allocate_widths as allocate_widths
from rebase_agent.answers import AnswerExtractor as AnswerExtractor
from rebase_agent.answers import extract_answer as extract_answer
from rebase_agent.answers import normalize_answer as normalize_answer
from rebase_agent.config import RebaseConfig as RebaseConfig
from rebase_agent.config import StrategyName as StrategyName
from rebase_agent.exceptions import ProviderError as ProviderError
from rebase_agent.exceptions import ProviderHTTPError as ProviderHTTPError
from rebase_agent.exceptions import ProviderTimeout as ProviderTimeout
from rebase_agent.exceptions import RebaseError as RebaseError
from rebase_agent.exceptions import ScoringError as ScoringError
from rebase_agent.exceptions import SearchFailed as SearchFailed
from rebase_agent.exceptions import SearchTimeout as SearchTimeout
from rebase_agent.protocols import FinishReason as FinishReason
from rebase_agent.protocols import Provider as Provider
from rebase_agent.protocols import Scorer as Scorer
from rebase_agent.protocols import ScoreRequest as ScoreRequest
from rebase_agent.protocols import StepCompletion as StepCompletion
from rebase_agent.protocols import StepRequest as StepRequest
from rebase_agent.result import AnswerVote as AnswerVote
from rebase_agent.result import Candidate as Candidate
from rebase_agent.result import SearchResult as SearchResult
from rebase_agent.scorers import ArithmeticScorer as ArithmeticScorer
from rebase_agent.scorers import ProductScorer as ProductScorer
from rebase_agent.scorers import with_check as with_check
from rebase_agent.search import RebaseSearch as RebaseSearch
from rebase_agent.search import solve as solve
from rebase_agent.tree import NodeRecord as NodeRecord
from rebase_agent.usage import DepthStats as DepthStats
from rebase_agent.usage import Usage as Usage
from rebase_agent.usage import record_scorer_tokens as record_scorer_tokens

__version__ = "0.1.0"

__all__ = (
    "AnswerExtractor",
    "AnswerVote",
    "ArithmeticScorer",
    "Candidate",
    "DepthStats",
    "FinishReason",
    "NodeRecord",
    "ProductScorer",
    "Provider",
    "ProviderError",
    "ProviderHTTPError",
    "ProviderTimeout",
    "RebaseConfig",
    "RebaseError",
    "RebaseSearch",
    "ScoreRequest",
    "Scorer",
    "ScoringError",
    "SearchFailed",
    "SearchResult",
    "SearchTimeout",
    "StepCompletion",
    "StepRequest",
    "StrategyName",
    "Usage",
    "__version__",
    "allocate_widths",
    "extract_answer",
    "normalize_answer",
    "record_scorer_tokens",
    "solve",
    "with_check",
)
