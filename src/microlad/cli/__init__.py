"""Command-line interface: one module per subcommand, registered on one typer app.

Commands are thin: parse options, call the library, print a summary. Every
:class:`~microlad.errors.MicroladError` is caught here, once, and printed as a single
``error: ...`` line with exit code 2.
"""
from __future__ import annotations

import logging
import sys

import typer

from microlad._version import __version__
from microlad.errors import MicroladError

app = typer.Typer(
    name="microlad",
    help="2D micrographs to statistically equivalent 3D microstructures (MicroLad).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"microlad {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details."),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
) -> None:
    """microlad command group."""
    logging.basicConfig(level=logging.DEBUG if debug else (logging.INFO if verbose else logging.WARNING), format="%(message)s")
    _state["debug"] = debug


_state: dict[str, bool] = {"debug": False}


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


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``microlad`` console script."""
    try:
        app(args=argv, standalone_mode=True)
    except MicroladError as exc:
        if _state["debug"]:
            raise
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("error: interrupted", err=True)
        sys.exit(130)
