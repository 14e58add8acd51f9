"""The ``emobench`` application: the command groups, and the one way every failure of input is reported."""

from __future__ import annotations

import signal
import sys

import typer
from rich.markup import escape

from emobench.cli import analysis, bench, profile, results, tables, zoo
from emobench.cli.options import err_console
from emobench.errors import EmobenchError

app = typer.Typer(
    help="emobench: how big, how costly, how fast and how far an efficient vision network sees.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
app.add_typer(zoo.app, name="zoo")
app.command("profile")(profile.profile)
app.command("bench")(bench.bench)
app.command("eval")(bench.evaluate)
app.add_typer(results.app, name="results")
app.command("rf")(analysis.rf)
app.command("erf")(analysis.erf)
app.command("mpl")(analysis.mpl)
app.command("modules")(analysis.modules)
app.command("table")(tables.table)
app.command("report")(tables.report)


def usage_line(err) -> str:
    """A click usage error as one line: the command, what is wrong, where help is."""
    ctx = getattr(err, "ctx", None)
    where = ctx.command_path if ctx is not None else "emobench"
    message = " ".join(err.format_message().split())
    return f"{where}: {message} (see '{where} --help')"


def main() -> None:
    """Entry point. Every kind of bad input (usage errors from click, emobench's own errors) is one line on
    stderr and exit code 2; anything else is a bug and keeps its traceback."""
    # click's exceptions as typer raises them (typer may vendor its own click)
    errors = sys.modules[typer.BadParameter.__module__]
    try:
        # not standalone: click leaves its errors to us instead of printing typer's multi-line boxes
        code = app(standalone_mode=False, prog_name="emobench")
    except errors.NoArgsIsHelpError as err:
        # a bare command or group: its help, as no_args_is_help asks, with the usage exit code
        help_text = err.ctx.get_help()  # typer's rich help prints itself and returns ""
        if help_text:
            print(help_text)
        sys.exit(2)
    except errors.ClickException as err:
        err_console.print(f"[red]error:[/] {escape(usage_line(err))}", highlight=False, soft_wrap=True)
        sys.exit(err.exit_code)
    except (typer.Abort, KeyboardInterrupt) as err:
        # click turns Ctrl-C into Abort (from the KeyboardInterrupt); a sweep's SIGTERM arrives the same way
        cause = err if isinstance(err, KeyboardInterrupt) else err.__cause__
        if not isinstance(cause, KeyboardInterrupt):
            sys.exit(130)  # an Abort of its own (a declined prompt)
        signum = getattr(cause, "signum", signal.SIGINT)
        line = "terminated" if signum == signal.SIGTERM else "interrupted"
        if hasattr(cause, "stored"):  # a sweep (emobench.runs.bench.run_stored): what it kept
            store = getattr(cause, "store", None)
            line += f": {cause.stored} record(s) stored in {store}" if store else ": nothing stored (--no-store)"
        err_console.print(escape(line), highlight=False, soft_wrap=True)
        sys.exit(128 + signum)
    except EmobenchError as err:
        err_console.print(f"[red]error:[/] {escape(str(err))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)
