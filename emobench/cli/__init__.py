"""The ``emobench`` command line: each command parses its options, makes one library call (which does its own
checks) and renders the typed result. One module per command group; :mod:`emobench.cli.app` ties them."""

from emobench.cli.app import app, main, run

__all__ = ["app", "main", "run"]
