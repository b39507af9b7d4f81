"""Syntax errors in a `.ng` file, said the way the user would say them.

lark reports what went wrong in its own terms: terminal names (``__ANON_3``, ``RSQB``), a parser
state, line -1 at the end of the file. Here each error becomes a `Diagnostic` that

* points at the offending token (at the end of the file: at the last token written),
* lists what could have come next as it would be typed (``'every'``, ``':'``, ``a number``),
* for the common mistakes, says what the mistake is and how to fix it. Those are recognised
  by example (lark's ``match_examples``): each entry of `MISTAKES` holds a few wrong snippets,
  and an error made in the same parser state gets that entry's message;
* is followed by the errors further down: the statement holding the error is blanked out
  (same length, line breaks kept, so positions do not move) and the text is parsed again.
"""

from __future__ import annotations

import difflib
import functools
import re
from dataclasses import dataclass

from lark.exceptions import UnexpectedCharacters, UnexpectedToken
from lark.lexer import PatternStr

from nestgraph.errors import Diagnostic
from nestgraph.spec.dsl_parser import CODE, parser
from nestgraph.spec.source import SourceFile, Span

MAX_ERRORS = 20

# Terminals that are patterns rather than fixed text, described for a person.
_DESCRIBED = {
    "NAME": "a name",
    "DOTTED": "a dotted name such as cms.fast",
    "NUMBER": "a number",
    "STRING": 'a quoted string ("...")',
    "UNIT": "a unit ('tokens' or 'steps')",
    "$END": "the end of the file",
}

_STATEMENT_KEYWORDS = ("nestgraph", "spec", "about", "model", "module", "level", "train", "data")
_STATEMENT_START = re.compile(rf"^(?:{'|'.join(_STATEMENT_KEYWORDS)})\b", re.MULTILINE)
# Long lists of what may come next, said in one phrase when all of them may.
_SUMMARIES = (
    (tuple(k.upper() for k in _STATEMENT_KEYWORDS), "a new statement"),
    (("NUMBER", "STRING", "TRUE", "FALSE", "NULL", "NAME", "DOTTED", "LSQB", "LBRACE"),
     "a value (a number, a name, a quoted string, [a list], {a record} or a call(...))"),
)
_OPENERS = {"[": "]", "{": "}", "(": ")"}
_CLOSERS = {v: k for k, v in _OPENERS.items()}


def shown(terminal: str) -> str:
    """A terminal as the user would type it: ``'every'``, ``':'``, ``a number``."""
    if terminal in _DESCRIBED:
        return _DESCRIBED[terminal]
    pattern = parser().get_terminal(terminal).pattern
    if isinstance(pattern, PatternStr):
        return f"'{pattern.value}'"
    raise KeyError(f"terminal {terminal} has no description")  # caught by the grammar test


def _expected(names: set[str]) -> str:
    words = {shown(n) for n in names if n not in ("WS", "COMMENT")}
    for group, summary in _SUMMARIES:
        shown_group = {shown(n) for n in group}
        if shown_group <= words:
            words = (words - shown_group) | {summary}
    words = sorted(words, key=lambda w: (not w.startswith("'"), w))
    if len(words) == 1:
        return words[0]
    return "one of " + ", ".join(words[:-1]) + " or " + words[-1]


# ---------------------------------------------------------------------- common mistakes


@dataclass(frozen=True)
class Mistake:
    message: str
    hint: str
    examples: tuple[str, ...]


MISTAKES: dict[str, Mistake] = {
    "unit": Mistake(
        "a period needs a unit after its count",
        "write 'every 16 tokens' or 'every 1 step'",
        ("level a every 16 on tokens: owns x", "level a every 16: owns x",
         "level a: every 16 owns x", "level a: every 16, owns x", "level a: every 16"),
    ),
    "arg_colon": Mistake(
        "arguments of a call are written name=value",
        "inside ( ) write name=value, as in gd(lr=0.01); key: value is for { } records",
        ("module a = m(x: 1)", "module a = m(x=1, y: 2)", "level a: minimise l2 by gd(lr: 1)",
         "level a: minimise l2(values: self) by gd(lr=1)"),
    ),
    "record_equals": Mistake(
        "entries of a { } record are written key: value",
        "inside { } write key: value, as in {kind: mlp}; name=value is for calls",
        ("module a = m(x={y = 1})", "model: block [{module = a}]", "module a = {type = mlp}",
         "module a = m(x={y: 1, z = 2})"),
    ),
    "positional": Mistake(
        "arguments of a call need names",
        "write name=value for each argument, as in gd(lr=0.01)",
        ("module a = m(1)", "module a = m(x=1, 2)", "module a = m(x)",
         "level a: minimise l2 by gd(0.01)"),
    ),
    "header_colon": Mistake(
        "a level's header ends with ':' before its clauses",
        "write the header, then ':' and the clauses, as in "
        "'level outer every 1 step on corpus: owns rest, ...'",
        ("level a every 1 step on corpus owns rest", "level a owns rest",
         "level a every 1 step owns rest", "level a on tokens owns rest",
         "level a on gradients of b owns rest", "level a every 1 step on corpus"),
    ),
    "missing_by": Mistake(
        "after the objective comes 'by' and the rule",
        "write 'minimise', the objective, 'by' and the rule, as in "
        "'minimise next_token by gd(lr=0.01)'",
        ("level a: minimise next_token adamw(lr=1)", "level a: minimise next_token",
         "level a: minimise l2(values=self) dgd(lr=1)", "level a: minimise l2(values=self)",
         "level a: minimise next_token, lifetime run", "level a: minimise next_token lifetime run"),
    ),
    "module_equals": Mistake(
        "a module is written 'module name = type(settings)'",
        "put '=' between the module's name and its type, as in 'module mlp = mlp(expand=4)'",
        ("module a mlp(expand=2)", "module a: mlp(expand=2)", "module a mlp"),
    ),
    "missing_value": Mistake(
        "this key has no value",
        "write the value after the key, as in 'steps 200' or 'owns cms.fast'",
        ("train: steps, batch 8", "train: steps", "level a: owns, lifetime run", "level a: owns",
         "model: dim, layers 2", "train: steps\nlevel a: owns x"),
    ),
    "yaml": Mistake(
        "this is YAML syntax, not the .ng language",
        "a .ng file says 'nestgraph 1', 'spec my_model', 'model: dim 64, ...' (docs/dsl.md); "
        "or save the file as .yaml",
        ("nestgraph: 1",),
    ),
}


@functools.cache
def _example_errors() -> list[tuple[str, int, str]]:
    """(label, parser state, token type) of the error each example of `MISTAKES` makes."""
    found = []
    for label, mistake in MISTAKES.items():
        for example in mistake.examples:
            try:
                parser().parse(example)
            except UnexpectedToken as err:
                found.append((label, err.state.position, err.token.type))
                continue
            raise AssertionError(f"example {example!r} of mistake {label!r} parses")
    return found


def _classify(err: UnexpectedToken) -> str | None:
    """The mistake whose examples fail in the same parser state, with the same token if any.

    Like lark's ``match_examples``, but states are compared without the depth of the parser's
    stack, so a mistake is recognised however deeply the value that holds it is nested.
    """
    candidate = None
    for label, state, token_type in _example_errors():
        if state != err.state.position:
            continue
        if token_type == err.token.type:
            return label
        candidate = candidate or label
    return candidate


# ------------------------------------------------------------------------ structural checks


def _scan_brackets(text: str, upto: int) -> tuple[list[tuple[str, int]], tuple[str, int] | None]:
    """Open brackets at `upto` (character, offset), and the first closer that fits none."""
    stack: list[tuple[str, int]] = []
    i = 0
    while i < upto:
        ch = text[i]
        if ch == "#":
            i = text.find("\n", i)
            i = upto if i < 0 else i
            continue
        if ch == '"':
            m = re.compile(r'"(?:[^"\\\n\r]|\\[^\n\r])*"?').match(text, i)
            i = m.end()
            continue
        if ch in _OPENERS:
            stack.append((ch, i))
        elif ch in _CLOSERS:
            if not stack or stack[-1][0] != _CLOSERS[ch]:
                return stack, (ch, i)
            stack.pop()
        i += 1
    return stack, None


def _position(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


class _Reporter:
    def __init__(self, text: str, source: SourceFile) -> None:
        self.text = text
        self.source = source
        # Set when an error asks for more than its own statement to be dropped to go on.
        self.recover: tuple[int, int] | None = None

    def at(self, span: Span, message: str, hint: str = "", notes: tuple[str, ...] = ()
           ) -> Diagnostic:
        return Diagnostic(message, self.source.pin(span), hint=hint, code=CODE, notes=notes)

    def at_offset(self, offset: int, message: str, hint: str = "",
                  notes: tuple[str, ...] = ()) -> Diagnostic:
        line, col = _position(self.text, offset)
        return self.at(Span(line, col, col + 1), message, hint, notes)

    def where(self, offset: int) -> str:
        line, col = _position(self.text, offset)
        return f"{self.source.filename}:{line}:{col}"

    def characters(self, err: UnexpectedCharacters) -> Diagnostic:
        span = Span(err.line, err.column, err.column + 1)
        if err.char == '"':
            return self.at(span, "this string is not closed",
                           "end it with '\"' on the same line (a string cannot span lines)")
        expected = f"; expected {_expected(set(err.allowed))}" if err.allowed else ""
        return self.at(span, f"unexpected character {err.char!r}{expected}")

    def token(self, err: UnexpectedToken) -> Diagnostic:
        tok = err.token
        end = tok.type == "$END"
        span = Span(tok.line, tok.column, max(tok.end_column, tok.column + 1))
        offset = len(self.text) if end else tok.start_pos
        closer = 0 if end or str(tok) not in _CLOSERS else 1
        stack, stray = _scan_brackets(self.text, offset + closer)
        if stray is not None:
            return self.stray(stray, stack)
        if stack and (end or str(tok) in _STATEMENT_KEYWORDS):
            # Recovery drops the statement that holds the bracket, up to where the next begins.
            self.recover = (_position(self.text, stack[-1][1])[0], offset)
            return self.unclosed(stack[-1], span, end)
        if tok.type == "NAME" and "LEVEL" in err.expected:
            return self.unknown_statement(tok, span)
        misspelled = self.misspelled_statement(offset)
        if misspelled is not None:
            return misspelled
        label = _classify(err)
        if label is not None:
            mistake = MISTAKES[label]
            return self.at(span, mistake.message, mistake.hint)
        found = "the file ends here" if end else f"unexpected {self.describe(tok)}"
        lead = "after this" if end else "here"
        return self.at(span, f"{found}: expected {_expected(err.expected)} {lead}")

    def describe(self, tok) -> str:
        if tok.type in ("NAME", "DOTTED", "NUMBER", "STRING"):
            return f"{_DESCRIBED[tok.type].split(' such as')[0]} '{tok}'"
        return f"'{tok}'"

    def stray(self, stray: tuple[str, int], stack: list[tuple[str, int]]) -> Diagnostic:
        ch, offset = stray
        if stack:
            opener, at = stack[-1]
            return self.at_offset(offset, f"'{ch}' does not close '{opener}'",
                                  f"close it with '{_OPENERS[opener]}'",
                                  (f"'{opener}' is opened at {self.where(at)}",))
        return self.at_offset(offset, f"'{ch}' closes nothing", "remove it")

    def unclosed(self, opened: tuple[str, int], here: Span, end: bool) -> Diagnostic:
        ch, offset = opened
        then = "the file ends" if end else f"the next statement starts at line {here.line}"
        return self.at_offset(offset, f"'{ch}' is never closed",
                              f"add '{_OPENERS[ch]}' where the value ends",
                              (f"{then} while '{ch}' is still open",))

    def misspelled_statement(self, offset: int) -> Diagnostic | None:
        """A line that starts, unindented, with a near miss of a statement keyword: read as a
        clause of the statement before, it fails further on, but the mistake is here."""
        line_start = self.text.rfind("\n", 0, offset) + 1
        word = re.match(r"[A-Za-z_]\w*", self.text[line_start:offset])
        if word is None or word.group() in _STATEMENT_KEYWORDS:
            return None
        match = difflib.get_close_matches(word.group(), _STATEMENT_KEYWORDS, n=1, cutoff=0.75)
        if not match:
            return None
        line, col = _position(self.text, line_start)
        span = Span(line, col, col + len(word.group()))
        return self.at(span, f"'{word.group()}' does not start a statement",
                       f"did you mean '{match[0]}'?")

    def unknown_statement(self, tok, span: Span) -> Diagnostic:
        word = str(tok)
        rest = self.text[tok.end_pos:].lstrip(" \t")
        if rest.startswith(":") and word in ("name", "levels", "modules", "about", "nestgraph"):
            return self.at(span, MISTAKES["yaml"].message, MISTAKES["yaml"].hint)
        match = difflib.get_close_matches(word, _STATEMENT_KEYWORDS, n=1, cutoff=0.6)
        hint = f"did you mean '{match[0]}'?" if match else ""
        return self.at(span, f"'{word}' does not start a statement", hint,
                       ("a statement starts with one of: " + ", ".join(_STATEMENT_KEYWORDS),))


def _blank_statement(text: str, line: int, end: int | None = None) -> str:
    """`text` with the statement holding `line` replaced by spaces (line breaks kept), up to
    the next statement or to offset `end`."""
    starts = [m.start() for m in _STATEMENT_START.finditer(text)]
    line_start = 0
    for _ in range(line - 1):
        line_start = text.index("\n", line_start) + 1
    begin = max([s for s in starts if s <= line_start], default=0)
    if end is None:
        after = [s for s in starts if s > line_start]
        end = after[0] if after else len(text)
    blanked = re.sub(r"[^\n]", " ", text[begin:end])
    return text[:begin] + blanked + text[end:]


def syntax_errors(text: str, source: SourceFile) -> list[Diagnostic]:
    """Every syntax error that can be found, each as a positioned diagnostic."""
    report = _Reporter(text, source)
    errors: list[Diagnostic] = []
    work = text
    for _ in range(MAX_ERRORS):
        report.text = work  # brackets and words are read from what is parsed now
        report.recover = None
        try:
            parser().parse(work)
            break
        except UnexpectedCharacters as err:
            errors.append(report.characters(err))
            line = err.line
        except UnexpectedToken as err:
            errors.append(report.token(err))
            line = err.token.line
            if errors[-1].message == MISTAKES["yaml"].message:
                break  # a YAML file: what follows would only repeat that
        if report.recover is not None:
            blanked = _blank_statement(work, *report.recover)
        else:
            blanked = _blank_statement(work, line)
        if blanked == work:
            break
        work = blanked
    return errors
