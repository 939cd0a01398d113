"""Helpers for the tests of ``rebase_server``: real servers on real localhost ports."""
