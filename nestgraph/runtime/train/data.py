"""Data for language-model training: bytes, or the ids of a tokenizer.

By default every byte is a token (vocabulary of 256), so any text works without a tokenizer;
`tokenize_corpus` turns a byte corpus into a tokenizer's ids (`runtime.train.tokenizer`),
splitting the bytes first so that the held-out text is the same whatever the tokenizer.
Batches are pure functions of ``(data, seed, step)``: a resumed run draws exactly the batches
it would have drawn, without saving a loader position.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from nestgraph.escape import printable
from nestgraph.runtime.train.sources import DATA_HINT, DataError, read_stdlib, read_user_path
from nestgraph.runtime.train.tokenizer import (
    BYTES,
    RUN_FILE,
    ByteTokens,
    choose_tokenizer,
    run_tokenizer,
)


@dataclass(frozen=True)
class Corpus:
    """A corpus split into a training part and a held-out tail, as token ids."""

    train: torch.Tensor  # 1-D: uint8 bytes, or int32 ids of `tokenizer`
    heldout: torch.Tensor
    source: str  # what the bytes are, for logs and env.json
    sha256: str  # hex digest of all bytes used, before the split (and of the tokenizer)
    n_files: int
    order: str = "random"  # data.order: how training windows are drawn (see `sample_batch`)
    tokenizer: object = field(default_factory=ByteTokens)  # ByteTokens or FileTokens

    @property
    def token_bytes(self) -> torch.Tensor | None:
        """The bytes each id stands for, indexed by id; ``None``: every token is one byte."""
        return self.tokenizer.lengths


def resolve_source(source: str | None, base: Path | str | None) -> str | None:
    """A ``data.source`` as a path to read: relative paths are taken from `base`.

    A spec's relative paths mean "next to the spec", wherever the command is run from, so the
    caller passes the folder of the spec as written by the user (``None`` leaves the path as
    it is, relative to the working folder). ``stdlib`` and ``None`` are returned unchanged.
    """
    if source is None or source == "stdlib" or base is None:
        return source
    path = Path(source).expanduser()
    return str(path if path.is_absolute() else Path(base) / path)


def load_corpus(
    path: str | Path | None,
    *,
    heldout_fraction: float = 0.05,
    max_bytes: int | None = 4_000_000,
    heldout_path: str | Path | None = None,
) -> Corpus:
    """Load a file, a folder of text files, or (with ``None``) the standard library sources.

    The bytes are truncated to `max_bytes` (``None`` keeps everything) whatever their source,
    so a run's data size does not depend on how large the given file happens to be. The last
    `heldout_fraction` of the bytes is held out for evaluation; both parts keep at least one
    byte. With `heldout_path`, all of the data trains and that file or folder (also cut at
    `max_bytes`) is the held-out part.
    """
    if not 0.0 < heldout_fraction < 1.0:
        raise DataError(
            f"heldout_fraction must be between 0 and 1 (exclusive), got {heldout_fraction}"
        )
    if max_bytes is not None and max_bytes < 2:
        raise DataError(f"max_bytes must be at least 2 to split the data, got {max_bytes}")

    if path is None:
        raw, n_files, source = read_stdlib(max_bytes)
    else:
        raw, n_files, source = read_user_path(Path(path), max_bytes)

    if max_bytes is not None:
        raw = raw[:max_bytes]
    if len(raw) < 2:
        raise DataError(
            f"data '{source}' has {len(raw)} byte(s); at least 2 are needed "
            "to keep one for training and one for evaluation",
            DATA_HINT,
        )
    digest = hashlib.sha256(raw).hexdigest()
    if heldout_path is None:
        train, heldout = _split(_to_tensor(raw), heldout_fraction)
        return Corpus(train=train, heldout=heldout, source=source, sha256=digest,
                      n_files=n_files)
    held, held_files, held_source = read_user_path(Path(heldout_path), max_bytes)
    held = held[:max_bytes] if max_bytes is not None else held
    if len(held) < 2:
        raise DataError(f"held-out data '{printable(held_source)}' has {len(held)} byte(s); at "
                        "least 2 are needed for one input and its target", DATA_HINT)
    both = hashlib.sha256(f"{digest}:{hashlib.sha256(held).hexdigest()}".encode()).hexdigest()
    return Corpus(train=_to_tensor(raw), heldout=_to_tensor(held),
                  source=f"{source}; held out: {held_source}", sha256=both,
                  n_files=n_files + held_files)


def tokenize_corpus(corpus: Corpus, choose) -> Corpus:
    """`corpus` (bytes) as the ids of ``choose(training bytes)``, a tokenizer.

    The bytes were split before tokenizing, so the held-out text is the one a byte-level run
    holds out; only a character cut in two by the split moves whole into the training part
    (a tokenizer reads characters). The digest then covers the tokenizer too: a run resumes
    only with the tokenizer it began with.
    """
    train, heldout = _raw(corpus.train), _raw(corpus.heldout)
    cut = next((i for i, b in enumerate(heldout[:3]) if b & 0xC0 != 0x80), min(len(heldout), 3))
    train, heldout = train + heldout[:cut], heldout[cut:]
    tokenizer = choose(train)
    if isinstance(tokenizer, ByteTokens):
        return corpus
    ids = [tokenizer.encode(part, what) for part, what in
           ((train, "the training data"), (heldout, "the held-out data"))]
    if ids[0].numel() < 2 or ids[1].numel() < 2:
        raise DataError(f"data '{printable(corpus.source)}' gives {ids[0].numel()} training and "
                        f"{ids[1].numel()} held-out tokens; each part needs at least 2",
                        "give more data, or raise data.heldout")
    digest = hashlib.sha256(f"{corpus.sha256}:{tokenizer.sha256}".encode()).hexdigest()
    return replace(corpus, train=ids[0], heldout=ids[1], sha256=digest, tokenizer=tokenizer)


def read_corpus(data_cfg: dict, base: Path | None = None, note=None,
                run: Path | None = None) -> Corpus:
    """The corpus a data section (as a plain dict) names, in its tokenizer's ids; relative
    paths are taken from `base`, and `note` is told what is read. Resuming `run`, a BPE
    learned on the data is the run's own copy, not learned again (a newer `tokenizers` could
    learn another, and the resume would stop as if the data had changed)."""
    source = None if data_cfg["source"] == "stdlib" else resolve_source(data_cfg["source"], base)
    heldout = resolve_source(data_cfg.get("heldout_source"), base)
    if note is not None:
        where = "the Python standard library sources" if source is None else f"'{source}'"
        limit = f" (at most {data_cfg['max_bytes']:,} bytes)" if data_cfg["max_bytes"] else ""
        held = f"; held out: '{heldout}'" if heldout else ""
        note(printable(f"reading data: {where}{limit}{held}"))
    corpus = load_corpus(source, heldout_fraction=data_cfg["heldout"],
                         max_bytes=data_cfg["max_bytes"], heldout_path=heldout)
    corpus = replace(corpus, order=data_cfg.get("order", "random"))
    setting = data_cfg.get("tokenizer", BYTES)
    if setting == BYTES:
        return corpus
    kept = run is not None and isinstance(setting, dict) and (Path(run) / RUN_FILE).is_file()
    corpus = tokenize_corpus(corpus, lambda train: run_tokenizer(run, setting) if kept
                             else choose_tokenizer(setting, base, train))
    if note is not None:
        n_bytes = int(corpus.token_bytes[corpus.train.long()].sum())
        note(printable(f"tokenizer: {corpus.tokenizer.name} ({corpus.tokenizer.vocab} tokens, "
                       f"{n_bytes / max(corpus.train.numel(), 1):.2f} bytes per training "
                       "token)"))
    return corpus


def check_vocab(corpus: Corpus, vocab: int) -> None:
    """The model must have one row per token id: the tokenizer's size, or 256 for bytes."""
    if not isinstance(corpus.tokenizer, ByteTokens):
        _check_tokenizer_vocab(corpus.tokenizer, vocab)
        return
    # Every byte is a token: a vocabulary smaller than the largest byte present cannot work.
    largest = max(int(part.max()) for part in (corpus.train, corpus.heldout) if part.numel())
    if largest >= vocab:
        raise DataError(
            f"model.vocab is {vocab}, but every byte is a token and the data holds byte "
            f"value {largest}",
            "compile the spec with model.vocab=256 (or give data whose bytes are all below "
            f"{vocab})")


def sample_batch(
    data: torch.Tensor, *, step: int, batch: int, seq_len: int, seed: int,
    order: str = "random",
) -> tuple[torch.Tensor, torch.Tensor]:
    """`batch` windows for a training step; ``y`` is ``x`` shifted left by one byte.

    ``order="random"``: independent random windows. ``order="stream"``: lane ``i`` reads its
    own contiguous part of the text, step after step (see `stream_starts`), so a stream-lifetime
    level sees a continuing context. Either way the batch is a pure function of ``(data, seed,
    step)``, so it is the same whether the run got there directly or by resuming.
    """
    _check_sizes(batch=batch, seq_len=seq_len)
    n = _length(data)
    if n < seq_len + 1:
        raise DataError(
            f"training data has {n} bytes but seq_len={seq_len} needs at least {seq_len + 1}",
            "lower seq_len or give more data",
        )
    if order == "stream":
        return _windows(data, stream_starts(n, step=step, batch=batch, seq_len=seq_len),
                        seq_len, wrap=True)
    if order != "random":
        raise ValueError(f"unknown data order {order!r}; expected 'random' or 'stream'")
    generator = torch.Generator(device="cpu")
    generator.manual_seed(_step_seed(seed, step))
    # Highest valid start is n - seq_len - 1 so the target window still fits; randint's bound
    # is exclusive.
    starts = torch.randint(0, n - seq_len, (batch,), generator=generator)
    return _windows(data, starts, seq_len)


def stream_starts(n: int, *, step: int, batch: int, seq_len: int) -> torch.Tensor:
    """Where each lane's window starts at ``step`` in stream order: lane ``i`` begins at
    ``i * n // batch`` and moves ``seq_len`` bytes per step, wrapping at the end of the text."""
    lanes = torch.arange(batch, dtype=torch.long)
    return (lanes * n // batch + step * seq_len) % n


def heldout_batches(
    data: torch.Tensor, *, batch: int, seq_len: int, max_batches: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Fixed, evenly spaced, non-overlapping windows over the held-out bytes.

    At most ``batch * max_batches`` windows are used; when fewer fit, all that fit are used and
    the last batch may hold fewer than `batch` rows (weight by ``x.numel()`` when averaging).
    Data shorter than ``seq_len + 1`` is evaluated with windows of ``len(data) - 1`` bytes, so
    even a tiny held-out part gives a number.
    """
    _check_sizes(batch=batch, seq_len=seq_len)
    if max_batches < 1:
        raise ValueError(f"max_batches must be at least 1, got {max_batches}")
    n = _length(data)
    if n < 2:
        raise DataError(
            f"held-out data has {n} byte(s); at least 2 are needed for one input and its target",
            "give more data or raise the held-out fraction",
        )
    length = min(seq_len, n - 1)
    fitting = (n - 1) // length  # non-overlapping windows of length + 1 bytes
    count = min(fitting, batch * max_batches)
    last_start = n - length - 1
    # Spread the windows over the whole held-out span rather than packing them at the front;
    # since count <= fitting, the spacing is at least `length`, so no two windows overlap.
    starts = torch.linspace(0, last_start, count, dtype=torch.float64).round().long()
    return [_windows(data, starts[i : i + batch], length) for i in range(0, count, batch)]


def _check_tokenizer_vocab(tokenizer, vocab: int) -> None:
    expected = tokenizer.expected_vocab
    if vocab == expected and tokenizer.vocab <= vocab:
        return
    size = f"{tokenizer.vocab} tokens" if tokenizer.vocab == expected else \
        f"{expected} tokens (it learned {tokenizer.vocab})"
    raise DataError(f"model.vocab is {vocab}, but the tokenizer "
                    f"'{printable(tokenizer.name)}' has {size}",
                    f"compile the spec with model.vocab={expected} (nestgraph train SPEC "
                    f"model.vocab={expected}), so that every token has its own row")


def _raw(part: torch.Tensor) -> bytes:
    return part.numpy().tobytes()


# --- tensors ------------------------------------------------------------------------------


def _to_tensor(raw: bytes) -> torch.Tensor:
    # A bytearray is writable, so torch does not warn; the clone owns its own memory.
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8).clone()


def _split(data: torch.Tensor, fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    n = data.numel()
    n_heldout = min(max(int(n * fraction), 1), n - 1)
    cut = n - n_heldout
    return data[:cut].clone(), data[cut:].clone()


def _length(data: torch.Tensor) -> int:
    if data.dim() != 1:
        raise ValueError(f"data must be a 1-D byte tensor, got shape {tuple(data.shape)}")
    return data.numel()


def _check_sizes(*, batch: int, seq_len: int) -> None:
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    if seq_len < 1:
        raise ValueError(f"seq_len must be at least 1, got {seq_len}")


def _step_seed(seed: int, step: int) -> int:
    """Mix (seed, step) into one generator seed; hashing keeps nearby steps unrelated."""
    digest = hashlib.blake2b(f"{seed}:{step}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def _windows(
    data: torch.Tensor, starts: torch.Tensor, length: int, wrap: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of ``length + 1`` bytes from each start, split into inputs and next-byte targets
    (with ``wrap``, a row running past the end continues from the text's start)."""
    offsets = torch.arange(length + 1)
    index = starts[:, None] + offsets[None, :]
    if wrap:
        index = index % _length(data)
    index = index.to(data.device)
    rows = data[index].long()
    return rows[:, :-1].contiguous(), rows[:, 1:].contiguous()
