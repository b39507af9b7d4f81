"""Turning DOT text into a picture with Graphviz's `dot` program, or saying clearly why not.

The `graphviz` package only writes DOT and calls the `dot` binary; the binary is a separate
install (a system package), so every drawing is also available as DOT text to render later.
"""

from __future__ import annotations

from pathlib import Path

from nestgraph.errors import EnvironmentProblem

PICTURES = ("svg", "png", "pdf")
INSTALL = ("install Graphviz (Debian/Ubuntu: apt-get install graphviz; macOS: brew install "
           "graphviz; conda: conda install graphviz)")


def have_dot() -> bool:
    import shutil

    return shutil.which("dot") is not None


def render(dot_text: str, fmt: str, dot_file: Path | None = None) -> bytes:
    """The picture in `fmt`; `EnvironmentProblem` (exit 6) when `dot` is missing or fails."""
    import graphviz

    try:
        return graphviz.Source(dot_text).pipe(format=fmt)
    except graphviz.ExecutableNotFound:
        written = f"; the DOT text is in {dot_file}" if dot_file is not None else ""
        later = (f"then: dot -T{fmt} {dot_file} -o {dot_file.with_suffix('.' + fmt)}"
                 if dot_file is not None else "or ask for --format dot and render it later")
        raise EnvironmentProblem(f"cannot draw {fmt}: Graphviz's 'dot' program is not "
                                 f"installed{written}", f"{INSTALL}; {later}") from None
    except graphviz.CalledProcessError as err:
        detail = (err.stderr or b"").decode("utf-8", "replace").strip().splitlines()
        raise EnvironmentProblem(f"Graphviz's 'dot' failed to draw {fmt}: "
                                 f"{detail[-1] if detail else err}") from None
