"""keyplan CLI commands: hsm (registered by keyplan.cli.main)."""

from __future__ import annotations

import typer


def register(app: typer.Typer, state_app: typer.Typer) -> None:
    """Add this group's commands to the app."""
