"""Composing a spec's YAML into pyyaml's node tree, safely: the safe loader counting aliases and
noting explicit tags, the limits on aliases, expansion and depth, and the messages for YAML
that does not parse."""

from __future__ import annotations

from typing import Any

import yaml

from nestgraph.errors import Diagnostic
from nestgraph.spec.source import SourceFile, Span
from nestgraph.spec.yaml_scalars import (
    LINE_BREAKS,
)

CODE = "E-YAML"


MAX_ALIASES = 100


# Values aliases may add to a document beyond those written out (a "billion laughs" adds
# billions); the values written are bounded by the size of the file instead.
MAX_EXPANSION = 100_000


MAX_DEPTH = 100


class Alias:
    """An alias use in the node tree: the node it names, and where the alias was written.

    pyyaml's composer returns the anchored node itself for an alias, losing the alias's own
    position and making alias uses indistinguishable from the anchored original.
    """

    def __init__(self, target: yaml.Node, start_mark: Any, end_mark: Any) -> None:
        self.target = target
        self.start_mark = start_mark
        self.end_mark = end_mark


class LimitExceeded(Exception):
    def __init__(self, message: str, mark: Any, hint: str = "", end_mark: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.mark = mark
        self.end_mark = end_mark
        self.hint = hint

    def diagnostic(self, source: SourceFile) -> Diagnostic:
        if self.end_mark is None:
            span = mark_span(self.mark)
        else:
            span = node_span(self.mark, self.end_mark, source)
        return Diagnostic(self.message, source.pin(span), hint=self.hint, code=CODE)


class Loader(yaml.SafeLoader):
    """The safe loader, used to compose only, counting aliases and noting explicit tags."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.alias_uses = 0
        self.explicit_tags: dict[int, str] = {}

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            self.alias_uses += 1
            if self.alias_uses > MAX_ALIASES:
                raise LimitExceeded(
                    f"more than {MAX_ALIASES} aliases (*name) in one document",
                    event.start_mark,
                    "a spec needs few aliases; this limit stops documents that expand "
                    "exponentially",
                )
            target = super().compose_node(parent, index)
            return Alias(target, event.start_mark, event.end_mark)
        tag = getattr(event, "tag", None)
        node = super().compose_node(parent, index)
        if tag is not None:
            # The resolved node.tag cannot tell `!!str 1e-3` from a plain `1e-3`.
            self.explicit_tags[id(node)] = tag
        return node


def node_span(start: Any, end: Any, source: SourceFile) -> Span:
    line, col = start.line + 1, start.column + 1
    if end.line == start.line:
        end_col = end.column + 1
    else:
        # Spans are one line long: a block that runs on is underlined to its first line's end.
        end_col = len(source.line_text(line).rstrip()) + 1
    return Span(line, col, max(end_col, col + 1))


def mark_span(mark: Any) -> Span:
    return Span(mark.line + 1, mark.column + 1, mark.column + 2)


def syntax_error(err: yaml.YAMLError, source: SourceFile) -> Diagnostic:
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err)
    context, context_mark = getattr(err, "context", None), getattr(err, "context_mark", None)
    notes: tuple[str, ...] = ()
    if context and problem.startswith("but "):
        # pyyaml splits one sentence in two: "expected a single document" / "but found ...".
        problem = f"{context}, {problem}"
    elif context and context_mark is not None:
        where = f"line {context_mark.line + 1}, column {context_mark.column + 1}"
        notes = (f"{context} that starts at {where}",)
    hint = "YAML does not allow tabs for indentation: use spaces" if "'\\t'" in problem else ""
    span = mark_span(mark) if mark is not None else Span(1, 1, 2)
    return Diagnostic(f"invalid YAML: {problem}", source.pin(span), hint=hint, code=CODE,
                      notes=notes)


def unreadable(err: yaml.reader.ReaderError, source: SourceFile) -> Diagnostic:
    """A character YAML refuses to read (a control character, a non-character)."""
    before = source.text[: err.position]
    line = len(LINE_BREAKS.findall(before)) + 1
    col = err.position - max((m.end() for m in LINE_BREAKS.finditer(before)), default=0) + 1
    code = err.character if isinstance(err.character, int) else ord(err.character)
    return Diagnostic(f"invalid YAML: the character U+{code:04X} is not allowed in a spec",
                      source.pin(Span(line, col, col + 1)), code=CODE,
                      hint="remove it (control characters cannot stand even in comments)")


def compose(text: str, source: SourceFile) -> tuple[Any, Loader | None, list[Diagnostic]]:
    try:
        loader = Loader(text)
    except yaml.reader.ReaderError as err:
        return None, None, [unreadable(err, source)]
    try:
        return loader.get_single_node(), loader, []
    except LimitExceeded as err:
        return None, None, [err.diagnostic(source)]
    except yaml.reader.ReaderError as err:
        return None, None, [unreadable(err, source)]
    except yaml.YAMLError as err:
        return None, None, [syntax_error(err, source)]
    except RecursionError:
        message = f"values are nested more than {MAX_DEPTH} deep"
        return None, None, [Diagnostic(message, source.pin(Span(1, 1, 2)), code=CODE)]
    finally:
        loader.dispose()


def children(node: Any) -> list[Any]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return list(node.value) if isinstance(node, yaml.SequenceNode) else []


def check_expansion(root: Any, aliases: int) -> None:
    """Fail before building if aliases would add more than `MAX_EXPANSION` values.

    What counts is the expansion (the values the document holds once every alias is replaced
    by what it names, less the values written out), not the size: a long spec without aliases
    is no attack. Sizes are summed once per distinct node, so this takes time in the size of
    the text even for a document that would expand to billions of values.
    """
    if not aliases:
        return
    sizes: dict[int, int] = {}

    def size(node: Any) -> int:
        target = node.target if isinstance(node, Alias) else node
        known = sizes.get(id(target))
        if known is not None:
            return known
        sizes[id(target)] = 1  # provisional: a recursive alias is reported while building
        total = 1 + sum(size(child) for child in children(target))
        sizes[id(target)] = total
        # Every value below this one that is not a distinct node of its own came from an alias.
        if total - len(sizes) > MAX_EXPANSION:
            raise LimitExceeded(
                f"aliases expand the document by more than {MAX_EXPANSION:,} values",
                target.start_mark,
                "this is how a 'billion laughs' attack looks; a spec's aliases repeat a few "
                "entries",
                target.end_mark,
            )
        return total

    size(root)
