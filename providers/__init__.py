"""Provider and scorer plug-ins for rebase-agent.

Each module depends only on the core's protocols (:mod:`rebase_agent.protocols`) and imports its
backend lazily, naming the extra to install when the backend is missing.
"""
