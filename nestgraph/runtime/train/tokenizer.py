"""What the model's token ids stand for: bytes, or the tokens of a byte-level tokenizer file.

Bytes need nothing: id ``b`` is byte ``b``. Any other tokenizer is a file of the Hugging Face
`tokenizers` package (``tokenizer.json``) whose every token stands for a fixed string of bytes
(a byte-level BPE, as ``nestgraph tokenizer train`` writes). Knowing those bytes exactly is
what keeps runs comparable: the held-out loss is still reported per byte of text, and what a
run samples decodes without loss. A tokenizer that changes the text (a normaliser, a prefix
space, an unknown-token fallback) is refused, since its token counts would not cover the bytes.
`tokenizers` is the optional extra ``nestgraph[tokenizers]``; bytes never import it.
"""

from __future__ import annotations

import hashlib
import json
import re
from array import array
from itertools import chain
from pathlib import Path

import torch

from nestgraph.errors import EnvironmentProblem
from nestgraph.escape import printable
from nestgraph.runtime.train.sources import DataError

TOKENIZERS_INSTALL = "pip install 'nestgraph[tokenizers]'"
RUN_FILE = "tokenizer.json"  # the copy a run with a tokenizer keeps in its folder
BYTES = "bytes"
_BYTES_HINT = "or train on bytes (data.tokenizer: bytes)"

# Where text may be cut into pieces for batch encoding: after a lone line break, between two
# non-space characters. A byte-level pre-tokenizer splits on both sides of it anyway, so the
# pieces encode to the same ids as the whole text (a test holds them to it), and
# `encode_batch` spreads them over the cores. (After a run of blank lines it would not: there
# the pre-tokenizer keeps the run's last break apart from the rest of the run.)
_PIECE_BREAK = re.compile(r"(?<=\S\n)(?=\S)")


def require_tokenizers():
    """The `tokenizers` package, or an error naming the extra that installs it."""
    try:
        import tokenizers
    except ImportError:
        raise EnvironmentProblem("a tokenizer other than bytes needs the 'tokenizers' package, "
                                 "which is not installed",
                                 f"{TOKENIZERS_INSTALL}, {_BYTES_HINT}") from None
    return tokenizers


def byte_alphabet() -> dict[str, int]:
    """The character a byte-level tokenizer writes for each byte, mapped back to the byte.

    Bytes that print as themselves in Latin-1 keep their character; the other 68 (controls,
    space, soft hyphen) take the characters from U+0100 on, in byte order.
    """
    kept = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    moved = [b for b in range(256) if b not in set(kept)]
    table = {chr(b): b for b in kept}
    table.update({chr(0x100 + i): b for i, b in enumerate(moved)})
    return table


class ByteTokens:
    """Every byte is a token (vocabulary 256): the default, needing no package."""

    name = BYTES
    vocab = 256
    expected_vocab = 256
    lengths = None  # every token is one byte
    sha256 = ""

    def encode(self, raw: bytes, what: str = "the data") -> torch.Tensor:
        if not raw:
            return torch.zeros(0, dtype=torch.uint8)
        # A bytearray is writable, so torch does not warn; the clone owns its own memory.
        return torch.frombuffer(bytearray(raw), dtype=torch.uint8).clone()

    def decode(self, ids) -> bytes:
        return bytes(int(i) for i in ids)


class FileTokens:
    """A byte-level `tokenizers` tokenizer, with the bytes each of its ids stands for."""

    def __init__(self, inner, text: str, name: str, requested: int | None = None) -> None:
        inner.no_truncation()  # a file may ask to cut or pad encodings: text is never cut
        inner.no_padding()
        self.inner, self.text, self.name = inner, text, name
        self.pieces = token_pieces(inner, name)
        self.vocab = len(self.pieces)
        # A BPE trained to N tokens may learn fewer on little text; the model still has N rows.
        self.expected_vocab = requested or self.vocab
        self.lengths = torch.tensor([len(p) for p in self.pieces], dtype=torch.long)
        self.sha256 = hashlib.sha256(text.encode("utf-8")).hexdigest()
        self.in_pieces = _splits_at_line_breaks(text)

    def encode(self, raw: bytes, what: str = "the data") -> torch.Tensor:
        """The ids of `raw` (UTF-8; an incomplete last character is dropped), checked to cover
        exactly its bytes."""
        text = utf8_text(raw, what)
        pieces = [p for p in _PIECE_BREAK.split(text) if p] if self.in_pieces else [text]
        encodings = self.inner.encode_batch(pieces, add_special_tokens=False)
        ids = array("i", chain.from_iterable(e.ids for e in encodings))
        tensor = torch.frombuffer(ids, dtype=torch.int32).clone() if ids else \
            torch.zeros(0, dtype=torch.int32)
        if self.decode(ids) != text.encode("utf-8"):
            raise DataError(f"tokenizer '{printable(self.name)}' does not keep the text as it "
                            f"is (its tokens of {what} decode to other bytes), so bits per byte "
                            "cannot be reported", "use a byte-level BPE without a normaliser "
                            f"(nestgraph tokenizer train DATA --vocab N -o tokenizer.json), "
                            f"{_BYTES_HINT}")
        return tensor

    def decode(self, ids) -> bytes:
        return b"".join(self.pieces[int(i)] for i in ids)


def _splits_at_line_breaks(text: str) -> bool:
    """Whether the file's pre-tokenizer is the one byte-level split that `_PIECE_BREAK` relies
    on (any other, or none, may merge across a line break: its text is encoded whole)."""
    try:
        pre = json.loads(text).get("pre_tokenizer") or {}
    except (ValueError, AttributeError):
        return False
    return pre.get("type") == "ByteLevel" and pre.get("use_regex", True)


def token_pieces(inner, name: str) -> list[bytes]:
    """The bytes of every id; an id the vocabulary skips stands for nothing."""
    added = {i: t.content for i, t in inner.get_added_tokens_decoder().items()}
    vocab = inner.get_vocab(with_added_tokens=True)
    alphabet = byte_alphabet()
    pieces = [b""] * (max(vocab.values(), default=-1) + 1)
    for token, i in vocab.items():
        if i in added:  # matched in the text as written: its UTF-8 bytes
            pieces[i] = added[i].encode("utf-8")
            continue
        try:
            pieces[i] = bytes(alphabet[c] for c in token)
        except KeyError:
            raise DataError(f"tokenizer '{printable(name)}' is not byte-level: its token "
                            f"{printable(repr(token))} does not stand for a string of bytes",
                            "train a byte-level BPE: nestgraph tokenizer train DATA --vocab N "
                            f"-o tokenizer.json, {_BYTES_HINT}") from None
    missing = set(range(256)) - {p[0] for p in pieces if len(p) == 1}
    if missing:  # a byte-level vocabulary starts from all 256 bytes, so every text encodes
        raise DataError(f"tokenizer '{printable(name)}' is not byte-level: it has no token for "
                        f"byte {min(missing):#04x} ({len(missing)} bytes lack one), so some "
                        "text cannot be encoded", "train a byte-level BPE: nestgraph tokenizer "
                        f"train DATA --vocab N -o tokenizer.json, {_BYTES_HINT}")
    return pieces


def utf8_text(raw: bytes, what: str) -> str:
    """`raw` as text; a character cut off at the end (by max_bytes) is dropped."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        if err.reason == "unexpected end of data" and err.end == len(raw):
            return raw[:err.start].decode("utf-8")
        raise DataError(f"{what} is not UTF-8 text (byte {err.start} is {raw[err.start]:#04x}), "
                        "and a tokenizer reads text", f"give UTF-8 text, {_BYTES_HINT}") from None


def load_tokenizer(path: str | Path) -> FileTokens:
    """A ``tokenizer.json`` file of the `tokenizers` package."""
    tokenizers = require_tokenizers()
    path = Path(path)
    shown = printable(str(path))
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"tokenizer file '{shown}' does not exist",
                        "give data.tokenizer a tokenizer.json (relative paths are taken from "
                        "the spec's folder), or write one: nestgraph tokenizer train DATA "
                        "--vocab N -o tokenizer.json") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read tokenizer file '{shown}': "
                        f"{getattr(err, 'strerror', None) or err}") from None
    try:
        inner = tokenizers.Tokenizer.from_str(text)
    except Exception as err:  # noqa: BLE001 - the Rust side raises a bare Exception
        raise DataError(f"'{shown}' is not a tokenizers file: {printable(str(err))}",
                        "give the tokenizer.json that tokenizers' Tokenizer.save writes") \
            from None
    return FileTokens(inner, text, str(path))


def train_bpe(texts: list[str], vocab: int, name: str = "trained BPE") -> FileTokens:
    """A byte-level BPE of at most `vocab` tokens learned from `texts`: the 256 bytes first
    (so every text encodes), then the merges the text repeats most."""
    tokenizers = require_tokenizers()
    from tokenizers import decoders, models, pre_tokenizers, trainers

    inner = tokenizers.Tokenizer(models.BPE())
    inner.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    inner.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, show_progress=False, special_tokens=[],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    inner.train_from_iterator(texts, trainer)
    return FileTokens(inner, inner.to_str(), name, requested=vocab)


def bpe_from_bytes(raw: bytes, vocab: int, what: str = "the training data",
                   name: str = "trained BPE") -> FileTokens:
    """`train_bpe` on the text of `raw`, cut where batch encoding cuts it."""
    return train_bpe([p for p in _PIECE_BREAK.split(utf8_text(raw, what)) if p], vocab, name)


def choose_tokenizer(setting, base: Path | str | None, train: bytes):
    """The tokenizer ``data.tokenizer`` names: ``bytes``, ``{bpe: N}`` (learned from `train`,
    the training bytes, never the held-out ones) or a file (relative paths from `base`)."""
    if setting in (None, BYTES):
        return ByteTokens()
    if isinstance(setting, dict):
        return bpe_from_bytes(train, int(setting["bpe"]),
                              name=f"a BPE of {setting['bpe']} tokens trained on the data")
    path = Path(setting).expanduser()
    return load_tokenizer(path if path.is_absolute() or base is None else Path(base) / path)


def run_tokenizer(run: Path, setting):
    """The tokenizer a run trained with: its own copy in the run folder (``RUN_FILE``)."""
    if setting in (None, BYTES):
        return ByteTokens()
    copy = Path(run) / RUN_FILE
    if not copy.is_file():
        raise DataError(f"run '{printable(str(run))}' trained with a tokenizer but its "
                        f"{RUN_FILE} is missing", "restore the file from the run's backup, or "
                        "evaluate another run")
    return load_tokenizer(copy)
