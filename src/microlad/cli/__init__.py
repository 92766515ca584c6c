"""Command-line interface: one module per subcommand, registered on one typer app.

Commands are thin: check every option, input and destination first, then call the
library and print a summary. Errors are handled here, once:

* :class:`~microlad.errors.MicroladError`, an ``OSError`` (e.g. a full disk) or any other
  exception that escapes a command: one ``error: ...`` line on stderr, exit code 2
  (``--debug``: the full traceback instead);
* usage errors (unknown option, bad value type): click's message, exit code 2;
* Ctrl-C: ``error: interrupted``, exit code 130.

``--debug`` and ``-v/--verbose`` are accepted anywhere on the command line (before or
after the subcommand). Each distinct warning is printed once per command.
"""
from __future__ import annotations

import logging
import sys

import typer
from typer.exceptions import TyperException

from microlad._version import __version__
from microlad.errors import MicroladError

app = typer.Typer(
    name="microlad",
    help="2D micrographs to statistically equivalent 3D microstructures (MicroLad).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_GLOBAL_FLAGS = {"--debug": "debug", "-v": "verbose", "--verbose": "verbose"}


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"microlad {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details (also accepted after the subcommand)."),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors (also accepted after the subcommand)."),
) -> None:
    """microlad command group."""
    _configure_logging(debug=debug or _state["debug"], verbose=verbose or _state["verbose"])


_state: dict[str, bool] = {"debug": False, "verbose": False}


class _OnceFilter(logging.Filter):
    """Drop a log record whose message was already printed during this command."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[tuple[int, str]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.levelno, record.getMessage())
        if key in self.seen:
            return False
        self.seen.add(key)
        return True


def _configure_logging(*, debug: bool, verbose: bool) -> None:
    _state["debug"] = debug
    level = logging.DEBUG if debug else (logging.INFO if verbose else logging.WARNING)
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_microlad", False):
            root.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.addFilter(_OnceFilter())
    handler._microlad = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)


def _split_global_flags(argv: list[str]) -> list[str]:
    """Remove ``--debug`` / ``-v`` / ``--verbose`` wherever they are (up to a ``--``)."""
    rest: list[str] = []
    for i, a in enumerate(argv):
        if a == "--":
            rest.extend(argv[i:])
            break
        if a in _GLOBAL_FLAGS:
            _state[_GLOBAL_FLAGS[a]] = True
        else:
            rest.append(a)
    return rest


def _register() -> None:
    from microlad.cli import demo, evaluate, generate, models, properties, reconstruct, train

    app.command("demo")(demo.demo)
    app.command("models")(models.models)
    app.command("properties")(properties.properties)
    app.command("train")(train.train)
    app.command("reconstruct")(reconstruct.reconstruct)
    app.command("evaluate")(evaluate.evaluate)
    app.command("generate")(generate.generate)


_register()


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``microlad`` console script."""
    _state.update(debug=False, verbose=False)
    args = _split_global_flags(list(sys.argv[1:] if argv is None else argv))
    _configure_logging(debug=_state["debug"], verbose=_state["verbose"])
    try:
        code = app(args=args, standalone_mode=False, prog_name="microlad")
        if code == 130:  # typer turns Ctrl-C inside a command into a silent exit code 130
            _fail("interrupted", 130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:  # Ctrl-C at a prompt
        _fail("interrupted", 130)
    except TyperException as exc:  # usage errors (typer's click): its own message, exit 2
        exc.show()  # type: ignore[attr-defined]
        sys.exit(getattr(exc, "exit_code", 2))
    except KeyboardInterrupt:
        if _state["debug"]:
            raise
        _fail("interrupted", 130)
    except MicroladError as exc:
        if _state["debug"]:
            raise
        _fail(_one_line(exc))
    except OSError as exc:
        if _state["debug"]:
            raise
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        _fail(f"{where}{exc.strerror or _one_line(exc)}")
    except Exception as exc:  # noqa: BLE001 - a bug or an unforeseen input: still one line
        if _state["debug"]:
            raise
        _fail(f"unexpected {type(exc).__name__}: {_one_line(exc)} (rerun with --debug for the traceback)")
    sys.exit(code if isinstance(code, int) else 0)
