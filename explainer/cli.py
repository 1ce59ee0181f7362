"""The ``explainer`` command line (typer). Errors print one readable line, never a traceback."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Annotated

import typer

from .errors import ExplainerError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Explain PyTorch models: attributions, heatmaps and self-contained HTML reports.",
)


def _friendly(fn):
    """Turn our errors (and missing files) into one line on stderr and exit code 2."""

    @functools.wraps(fn)
    def run(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (ExplainerError, FileNotFoundError) as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(code=2) from None

    return run


@app.command()
@_friendly
def methods() -> None:
    """List the attribution methods: name, aliases, modalities, description."""
    from . import methods as _  # noqa: F401
    from .registry import list_methods

    typer.echo(str(list_methods()))


@app.command()
@_friendly
def demo(
    out: Annotated[Path, typer.Option(help="Where to write the HTML report.")] = Path(
        "reports/demo.html"
    ),
    n_images: Annotated[int, typer.Option(min=1, max=64, help="Demo images to explain.")] = 8,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Explain the embedded demo (shipped CNN on synthetic shapes, MLP on breast cancer) and write a report."""
    from .demo.run import run_demo

    path, seconds = run_demo(out=out, n_images=n_images, progress=progress)
    typer.echo(f"wrote {path} in {seconds:.1f} s")


@app.command()
@_friendly
def report(
    files: Annotated[
        list[Path], typer.Argument(help="Saved explanations (.npz from Explanation.save).")
    ],
    out: Annotated[Path, typer.Option(help="Where to write the HTML report.")] = Path(
        "reports/report.html"
    ),
    title: Annotated[str, typer.Option(help="Report title.")] = "explainer report",
) -> None:
    """Build one self-contained HTML report from saved explanations."""
    from .report.html import report as write_report

    path = write_report([str(f) for f in files], path=out, title=title)
    typer.echo(f"wrote {path}")


def main() -> None:  # pragma: no cover - console entry point
    app(prog_name="explainer")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
