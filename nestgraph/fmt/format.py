"""``nestgraph fmt``: a spec file in canonical form, in its own language or in the other one.

The file is read as it is written (no overrides, no defaults), its comments attached to the
entries they describe, and written again by `emit_yaml` or `emit_ng`. Formatting needs a file
that parses; converting needs one the target language can say, which every valid spec is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nestgraph.fmt.emit import Unwritable
from nestgraph.fmt.emit_ng import to_ng
from nestgraph.fmt.emit_yaml import to_yaml
from nestgraph.spec.comments import Attached, attach, yaml_comments
from nestgraph.spec.source import SourceFile

FORMS = {"yaml": ".yaml", "ng": ".ng"}
_SCHEMA_MODELINE = "yaml-language-server:"


@dataclass
class Document:
    data: dict[str, Any]
    source: SourceFile
    notes: Attached
    form: str  # "yaml" or "ng"


def form_of(path: Path | str) -> str:
    return "ng" if str(path).endswith(FORMS["ng"]) else "yaml"


def read_text(text: str, filename: str, form: str) -> Document:
    """Parse a spec's text with its comments; raise `SpecError` if it does not parse."""
    if form == "ng":
        from nestgraph.spec.dsl_front import parse_dsl

        parsed = parse_dsl(text, filename)
        return Document(parsed.data, parsed.source, attach(parsed.comments, parsed.source), form)
    from nestgraph.spec.yaml_front import load_yaml

    data, source = load_yaml(text, filename)
    return Document(data, source, attach(yaml_comments(text), source), form)


def write_text(doc: Document, form: str) -> str:
    """The document as canonical text in `form`; raise `SpecError` if it cannot be said."""
    notes = doc.notes
    if form == "ng":
        # The editor modeline that points YAML tools at the JSON Schema means nothing in .ng.
        notes = Attached(notes.leading, notes.trailing, notes.footer)
        notes.leading = {p: [t for t in texts if not t.startswith(_SCHEMA_MODELINE)]
                         for p, texts in notes.leading.items()}
    try:
        return to_ng(doc.data, notes) if form == "ng" else to_yaml(doc.data, notes)
    except Unwritable as err:
        raise err.as_error(doc.source, "ng" if form == "ng" else "YAML") from None


def convert(text: str, filename: str, to: str | None = None) -> str:
    """`text` (a spec file's content) in canonical form, in `to` or in its own form."""
    doc = read_text(text, filename, form_of(filename))
    return write_text(doc, to or doc.form)
