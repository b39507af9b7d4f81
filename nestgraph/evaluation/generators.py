"""Seeded generators of the synthetic tasks: pure functions of their arguments.

Every generator returns `Item`s of exactly the asked length (in bytes) where the format allows
it, with the spans of the bytes to score. Texts are ASCII.
"""

from __future__ import annotations

import random
import string

from nestgraph.evaluation.items import Item

LETTERS = string.ascii_lowercase
DIGITS = string.digits

# Filler for the haystack: plain sentences, none of which holds a digit.
FILLER = (
    "The grass is green. ", "The sky is blue. ", "The sun is warm today. ",
    "A river runs past the old mill. ", "Birds sing in the morning. ",
    "The road goes on over the hill. ", "Here the story turns again. ",
    "Nobody came to the door. ", "It was a quiet afternoon. ",
)


def _fit(body: str, tail: str, length: int, rng: random.Random) -> str:
    """`body` padded with filler (or cut) so that ``body + tail`` is exactly `length` bytes."""
    room = length - len(tail)
    while len(body) < room:
        body += rng.choice(FILLER)
    return body[:room]


# ------------------------------------------------------------------------------ recall


def mqar(length: int, *, queries: int = 4, key_len: int = 3, value_len: int = 2,
         seed: int = 0) -> Item:
    """Multi-query associative recall: ``key=value;`` pairs, then some keys asked again.

    The pairs fill the context; the last `queries` pairs (fewer when the context holds fewer
    than twice as many pairs) repeat earlier keys with their values, and the values of those
    repeats are the answers. Keys are distinct.
    """
    rng = random.Random(seed)
    pair = key_len + 1 + value_len + 1
    total = (length - 1) // pair
    queries = min(queries, total // 2)  # a short context asks fewer questions
    n_pairs = total - queries
    if queries < 1 or n_pairs > len(LETTERS) ** key_len:
        raise ValueError(f"a context of {length} bytes does not fit an MQAR query")
    keys: list[str] = []
    seen: set[str] = set()
    while len(keys) < n_pairs:
        key = "".join(rng.choice(LETTERS) for _ in range(key_len))
        if key not in seen:
            seen.add(key)
            keys.append(key)
    values = {k: "".join(rng.choice(DIGITS) for _ in range(value_len)) for k in keys}
    pad = length - (n_pairs + queries) * pair
    text = " " * (pad - 1) + "\n" + "".join(f"{k}={values[k]};" for k in keys)
    answers = []
    for key in rng.sample(keys, queries):
        start = len(text) + key_len + 1
        text += f"{key}={values[key]};"
        answers.append((start, start + value_len))
    return Item(text.encode("ascii"), tuple(answers))


def needle(length: int, *, keys: int = 1, digits: int = 5, seed: int = 0) -> Item:
    """Passkeys hidden in filler text, then one of them asked for.

    One key: "The passkey is 12345." somewhere in the filler, and at the end "What is the
    passkey? The passkey is 12345." whose digits are the answer. Several keys: each is named
    by a colour ("The passkey for red is ...") and one named key is asked for.
    """
    colours = ("red", "blue", "green", "amber", "violet", "white", "black", "grey")
    if not 1 <= keys <= len(colours):
        raise ValueError(f"keys must be 1 to {len(colours)}")
    rng = random.Random(seed)
    names = rng.sample(colours, keys) if keys > 1 else [""]
    codes = {n: "".join(rng.choice(DIGITS) for _ in range(digits)) for n in names}
    said = {n: (f"The passkey for {n} is " if n else "The passkey is ") for n in names}
    asked = rng.choice(names)
    question = (f"What is the passkey for {asked}? " if asked else "What is the passkey? ")
    tail = f"\n{question}{said[asked]}{codes[asked]}."
    needles = [f"{said[n]}{codes[n]}. " for n in names]
    room = length - len(tail) - sum(len(s) for s in needles)
    if room < 1:
        raise ValueError(f"a context of {length} bytes is too short for {keys} passkey(s)")
    hay = _fit("", "", room, rng)
    cuts = sorted(rng.randrange(room + 1) for _ in needles)
    body, last = "", 0
    for cut, text in zip(cuts, needles, strict=True):
        body += hay[last:cut] + text
        last = cut
    body += hay[last:]
    full = body + tail
    end = len(full) - 1  # the final full stop is not part of the answer
    return Item(full.encode("ascii"), ((end - digits, end),))


# -------------------------------------------------------------------- formal languages


def copy_string(n: int, *, seed: int = 0) -> Item:
    """``#`` + n random letters + ``|`` + the same letters + ``.``; the copy is scored."""
    rng = random.Random(seed)
    word = "".join(rng.choice(LETTERS) for _ in range(n))
    text = f"#{word}|{word}."
    return Item(text.encode("ascii"), ((n + 2, 2 * n + 2),))


def parity(n: int, *, seed: int = 0) -> Item:
    """``#`` + n random bits + ``=`` + the parity of the ones (0 even, 1 odd); that is scored."""
    rng = random.Random(seed)
    bits = "".join(rng.choice("01") for _ in range(n))
    text = f"#{bits}={bits.count('1') % 2}."
    return Item(text.encode("ascii"), ((n + 2, n + 3),))


def anbn(n: int, *, seed: int = 0) -> Item:
    """``#`` aⁿbⁿ ``.``: after the first b the rest is determined; that rest is scored.

    `seed` is unused (the string is fixed by n); it is accepted so every generator has the
    same signature.
    """
    text = "#" + "a" * n + "b" * n + "."
    return Item(text.encode("ascii"), ((n + 2, len(text)),))


def anbncn(n: int, *, seed: int = 0) -> Item:
    """``#`` aⁿbⁿcⁿ ``.``: after the first b the rest is determined; that rest is scored."""
    text = "#" + "a" * n + "b" * n + "c" * n + "."
    return Item(text.encode("ascii"), ((n + 2, len(text)),))


FORMAL = {"copy": copy_string, "parity": parity, "anbn": anbn, "anbncn": anbncn}
