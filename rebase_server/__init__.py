"""REBASE behind an OpenAI-compatible API (``rebase-agent serve``) and as an MCP tool
(``rebase-agent mcp``, :mod:`rebase_server.mcp_server`), for agent frameworks.

Needs the ``server`` extra: ``pip install 'rebase-agent[server]'`` (and ``mcp`` for the MCP
tool).
"""

try:
    import starlette  # noqa: F401
    import uvicorn  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "rebase-agent serve needs the server extra: pip install 'rebase-agent[server]'"
    ) from exc

from rebase_server.app import ApiError as ApiError
from rebase_server.app import create_app as create_app
from rebase_server.config import ConfigError as ConfigError
from rebase_server.config import ForwardTools as ForwardTools
from rebase_server.config import RouteConfig as RouteConfig
from rebase_server.config import ServerConfig as ServerConfig
from rebase_server.config import load_config as load_config

__all__ = (
    "ApiError",
    "ConfigError",
    "ForwardTools",
    "RouteConfig",
    "ServerConfig",
    "create_app",
    "load_config",
)
