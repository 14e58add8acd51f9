"""The ``emobench`` application: the command groups, and the one way every failure of input is reported."""

from __future__ import annotations

import atexit
import os
import sys
import threading
import warnings

import typer
from rich.markup import escape

from emobench.cli import analysis, bench, export, predict, profile, results, sweep, tables, train, zoo
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
app.command("train-cost")(train.train_cost)
app.command("sweep")(sweep.sweep)
app.command("predict")(predict.predict)
app.command("export")(export.export)
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
    # An exporter that imports JAX (litert-torch) makes Python warn at every fork; emobench's forks exec a fresh
    # worker at once (nothing of the parent's threads runs in the child), so the warning is noise on a terminal.
    warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
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
        # Ctrl-C or a sweep's SIGTERM (this typer turns them into exit code 130 itself, click into an Abort
        # from the KeyboardInterrupt): one line saying what was kept, exit code 128 + the signal
        cause = err if isinstance(err, KeyboardInterrupt) else err.__cause__
        sys.exit(bench.interrupted(cause) if isinstance(cause, KeyboardInterrupt) else 130)
    except EmobenchError as err:
        # one line whatever the message embeds (a reference or path with a line break is the user's text)
        err_console.print(f"[red]error:[/] {escape(' '.join(str(err).split()))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except (MemoryError, RuntimeError) as err:  # an allocation the machine refused, whatever the estimates said
        line = out_of_memory_line(err)
        if line is None:
            raise  # any other RuntimeError is a bug: its traceback
        err_console.print(f"[red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)


def run() -> None:
    """The console entry point: :func:`main`, then out without Python's teardown of every module and object
    (with torch, pandas and a model loaded, ~0.3–0.5 s of a command's wall time on this kind of machine, freeing
    memory the OS takes back anyway). What a normal exit does that matters still happens: the atexit handlers run
    (a local Ray instance is shut down, temporary folders removed) and the streams are flushed. A bug's traceback,
    and a run with threads still working, take the normal way out."""
    try:
        main()
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        sys.exit(code)  # Python joins them first
    if code is None:
        code = 0
    elif not isinstance(code, int):  # sys.exit("text"): the text on stderr, status 1
        print(code, file=sys.stderr)
        code = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`| head`) or stream: nothing more can reach it
            pass
    os._exit(code)


def out_of_memory_line(err: BaseException) -> str | None:
    """One line for a failed allocation (a MemoryError; torch's CPU allocator raises a RuntimeError), else None."""
    text = " ".join(str(err).split())
    if not (isinstance(err, MemoryError) or type(err).__name__ == "OutOfMemoryError" or "can't allocate memory" in text):
        return None
    detail = text.split("DefaultCPUAllocator: ")[-1] or "an allocation failed"
    return f"out of memory: {detail} (use a smaller input, batch or model)"
