"""How a command's result reaches the operator: a rich table for people, one JSON document for scripts.

Every command returns a View; nothing else prints. Problems (a region that could not be read) go to
stderr after the output and make the exit code 1, so a script sees a partial answer as a failure.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from amikeeper_cli.errors import FAILED, OK


@dataclass(frozen=True)
class Section:
    title: str
    columns: Sequence[str]
    rows: Sequence[Sequence[str]]


@dataclass(frozen=True)
class View:
    document: dict[str, Any]
    sections: Sequence[Section] = ()
    notes: Sequence[str] = ()
    problems: Sequence[str] = field(default_factory=tuple)

    @property
    def exit_code(self) -> int:
        return FAILED if self.problems else OK


def show(view: View, *, as_json: bool) -> int:
    if as_json:
        click.echo(json.dumps(view.document, indent=2, sort_keys=True))
    else:
        # Identifiers must stay copyable: cells fold onto a second line rather than being cut with "…".
        console = Console(soft_wrap=False, highlight=False)
        for section in view.sections:
            table = Table(title=section.title, title_justify="left")
            for column in section.columns:
                table.add_column(column, overflow="fold")
            for row in section.rows:
                table.add_row(*row)
            console.print(table)
        for note in view.notes:
            console.print(note, markup=False)
    for problem in view.problems:
        click.echo(f"amikeeper: {problem}", err=True)
    return view.exit_code
