"""Server-side commands (serve, worker, keys, db, bench), registered on the CLI."""

from __future__ import annotations


def add_commands(sub, add_engine_args) -> None:
    """Filled in as the server parts land."""
