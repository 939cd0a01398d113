"""``python -m rebase_agent`` runs the ``rebase-agent`` command."""

from rebase_agent.cli import main

if __name__ == "__main__":
    main()
