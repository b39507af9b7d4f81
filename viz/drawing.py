"""`nestgraph graph`: pick the view and format, load what to draw, write it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from nestgraph.compiler.buildfolder import cannot_write
from nestgraph.errors import EnvironmentProblem, UsageProblem
from nestgraph.escape import printable
from nestgraph.fsutil import atomic_write_text
from nestgraph.viz import sources, views
from nestgraph.viz.render import PICTURES, have_dot, render

_SUFFIXES = {".svg": "svg", ".png": "png", ".pdf": "pdf", ".dot": "dot", ".gv": "dot",
             ".json": "json", ".mmd": "mermaid", ".mermaid": "mermaid"}


@dataclass(frozen=True)
class DrawRequest:
    view: str = "levels"
    fmt: str | None = None  # None: from the output's suffix, else dot
    depth: int = 1
    direction: str = "TB"


def _format(request: DrawRequest, out: Path | None) -> str:
    if request.fmt is not None:
        fmt = request.fmt.lower()
        if fmt not in (*PICTURES, *views.TEXT_FORMATS):
            raise UsageProblem(f"unknown format '{request.fmt}'",
                               "choose svg, png, pdf, dot, json or mermaid")
        return fmt
    if out is None:
        return "dot"
    if out.suffix.lower() not in _SUFFIXES:
        raise UsageProblem(f"cannot tell the format from '{out.name}'",
                           "end the file name in .svg, .png, .pdf, .dot, .json or .mmd, "
                           "or pass --format")
    return _SUFFIXES[out.suffix.lower()]


def _check(request: DrawRequest) -> None:
    if request.view not in views.VIEWS:
        raise UsageProblem(f"unknown view '{request.view}'", "choose levels, schedule or modules")
    if request.direction not in ("TB", "LR"):
        raise UsageProblem(f"unknown direction '{request.direction}'", "choose TB or LR")
    if request.depth < 0:
        raise UsageProblem("--depth must be 0 or more")


def draw(arg: str, overrides: list[str], request: DrawRequest,
         out: Path | None) -> Iterator[str]:
    """Write the drawing; yield what to print (the text itself when it goes to stdout)."""

    _check(request)
    if out is not None and str(out) == "-":  # as for fmt: '-' is standard output
        out = None
        if request.fmt is not None and request.fmt.lower() in PICTURES:
            raise UsageProblem("a picture cannot go to standard output",
                               f"write it to a file: -o drawing.{request.fmt.lower()}")
    fmt = _format(request, out)
    plan, spec = sources.load(arg, overrides)
    as_text = fmt if fmt in views.TEXT_FORMATS else "dot"
    text = views.text(plan, spec, request.view, as_text, request.depth, request.direction)
    if fmt in views.TEXT_FORMATS:
        if out is None:
            yield text
            return
        atomic_write_text(out, text)
        yield f"wrote {out}"
        return
    target = out or Path(f"{plan['name']}-{request.view}.{fmt}")
    dot_file = target.with_suffix(".dot")
    if not have_dot():
        atomic_write_text(dot_file, text)  # the drawing is never lost for want of Graphviz
    target.write_bytes(render(text, fmt, dot_file))
    yield f"wrote {target}"


def write_level_diagram(plan: dict, spec, folder: Path) -> str:
    """levels.dot always; levels.svg too when Graphviz's `dot` is installed. Says which."""
    from nestgraph.viz.views import text

    dot_text = text(plan, spec, "levels", "dot")
    try:
        atomic_write_text(folder / "levels.dot", dot_text)
    except OSError as err:
        raise cannot_write(folder / "levels.dot", err) from None
    shown = printable(str(folder))
    if not have_dot():
        return (f"diagram: {shown}/levels.dot (no levels.svg: Graphviz's 'dot' is not "
                "installed; install it, or run: dot -Tsvg levels.dot -o levels.svg)")
    try:
        svg = render(dot_text, "svg")
    except EnvironmentProblem as err:
        return f"diagram: {shown}/levels.dot (no levels.svg: {err.message})"
    try:
        atomic_write_text(folder / "levels.svg", svg.decode("utf-8"))
    except OSError as err:
        raise cannot_write(folder / "levels.svg", err) from None
    return f"diagram: {shown}/levels.dot, levels.svg"
