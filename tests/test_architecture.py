"""The shape of the code, beside the import-linter contracts (pyproject.toml, run by CI): the command line only
parses, calls and renders, so no command function grows past ~40 lines of body."""

from __future__ import annotations

import ast
from pathlib import Path

import emobench.cli

CLI = Path(emobench.cli.__file__).parent


def _bodies():
    for path in sorted(CLI.glob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef):
                body = node.body
                has_doc = isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) and len(body) > 1
                yield f"{path.name}:{node.name}", node.end_lineno - (body[1] if has_doc else body[0]).lineno + 1


def test_no_command_function_holds_more_than_40_lines():
    long = {name: n for name, n in _bodies() if n > 40}
    assert not long, long


def test_every_command_is_registered_from_a_command_module():
    """Each registered command's callback lives in emobench.cli, so `emobench --help` lists what the modules hold."""
    import typer.main

    group = typer.main.get_command(emobench.cli.app)
    names = set(group.commands)
    assert {"zoo", "profile", "bench", "eval", "results", "rf", "erf", "mpl", "modules", "table", "report"} <= names
    for name, command in group.commands.items():
        callbacks = [command.callback] + [c.callback for c in getattr(command, "commands", {}).values()]
        assert all(cb is None or cb.__module__.startswith("emobench.cli.") for cb in callbacks), name
