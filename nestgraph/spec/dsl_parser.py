"""The .ng grammar's LALR parser, built once per process, and the comments its lexer collects.

Shared by the front end (`dsl_front`) and the error explainer (`dsl_errors`), so that neither
imports the other at module level."""

from __future__ import annotations

import contextvars
import functools
from importlib import resources

from lark import Lark, Token

CODE = "E-DSL"


# Comments are not part of the tree; the lexer hands each one to the list of the parse that is
# running (a context variable, so concurrent parses in threads do not mix their comments).
_COMMENTS: contextvars.ContextVar[list[Token]] = contextvars.ContextVar("ng_comments")


def _collect_comment(tok: Token) -> Token:
    sink = _COMMENTS.get(None)
    if sink is not None:
        sink.append(tok)
    return tok


@functools.cache
def parser() -> Lark:
    """The LALR parser, built once per process (about 50 ms)."""
    grammar = resources.files("nestgraph.spec").joinpath("grammar.lark").read_text("utf-8")
    return Lark(grammar, parser="lalr", lexer="contextual", propagate_positions=True,
                maybe_placeholders=False, lexer_callbacks={"COMMENT": _collect_comment})
