"""Byte-level data for language-model training.

Every byte is a token (vocabulary of 256), so any text works without a tokenizer. Batches are
pure functions of ``(data, seed, step)``: a resumed run draws exactly the batches it would have
drawn, without saving a loader position.
"""

from __future__ import annotations

import hashlib
import os
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import torch

from nestgraph.errors import TrainingError

# How much of a file is inspected to decide whether it is text (the same rule git uses).
_SNIFF_BYTES = 8192
# Folders of the standard library that are not ordinary library source, or not the stdlib.
_STDLIB_SKIP_DIRS = frozenset(
    {"site-packages", "dist-packages", "test", "tests", "idlelib", "__pycache__"}
)
_DATA_HINT = (
    "pass --data with a text file or a folder of text files, "
    "or leave it out to use the built-in Python standard library corpus"
)


class DataError(TrainingError):
    """The training data cannot be used: missing, unreadable, empty or too small."""

    hint: str | None

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message, hint or "")
        self.hint = hint  # None when there is nothing useful to suggest


@dataclass(frozen=True)
class Corpus:
    """A byte corpus split into a training part and a held-out tail."""

    train: torch.Tensor  # 1-D uint8
    heldout: torch.Tensor  # 1-D uint8
    source: str  # what the bytes are, for logs and env.json
    sha256: str  # hex digest of all bytes used, before the split
    n_files: int


def load_corpus(
    path: str | Path | None,
    *,
    heldout_fraction: float = 0.05,
    max_bytes: int | None = 4_000_000,
) -> Corpus:
    """Load a file, a folder of text files, or (with ``None``) the standard library sources.

    The bytes are truncated to `max_bytes` (``None`` keeps everything) whatever their source,
    so a run's data size does not depend on how large the given file happens to be. The last
    `heldout_fraction` of the bytes is held out for evaluation; both parts keep at least one
    byte.
    """
    if not 0.0 < heldout_fraction < 1.0:
        raise DataError(
            f"heldout_fraction must be between 0 and 1 (exclusive), got {heldout_fraction}"
        )
    if max_bytes is not None and max_bytes < 2:
        raise DataError(f"max_bytes must be at least 2 to split the data, got {max_bytes}")

    if path is None:
        raw, n_files, source = _read_stdlib(max_bytes)
    else:
        raw, n_files, source = _read_user_path(Path(path), max_bytes)

    if max_bytes is not None:
        raw = raw[:max_bytes]
    if len(raw) < 2:
        raise DataError(
            f"data '{source}' has {len(raw)} byte(s); at least 2 are needed "
            "to keep one for training and one for evaluation",
            _DATA_HINT,
        )
    digest = hashlib.sha256(raw).hexdigest()
    train, heldout = _split(_to_tensor(raw), heldout_fraction)
    return Corpus(train=train, heldout=heldout, source=source, sha256=digest, n_files=n_files)


def sample_batch(
    data: torch.Tensor, *, step: int, batch: int, seq_len: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw `batch` random windows; ``y`` is ``x`` shifted left by one byte.

    The generator is seeded from ``(seed, step)`` alone, never from a running stream, so the
    batch for a step is the same whether the run got there directly or by resuming.
    """
    _check_sizes(batch=batch, seq_len=seq_len)
    n = _length(data)
    if n < seq_len + 1:
        raise DataError(
            f"training data has {n} bytes but seq_len={seq_len} needs at least {seq_len + 1}",
            "lower seq_len or give more data",
        )
    generator = torch.Generator(device="cpu")
    generator.manual_seed(_step_seed(seed, step))
    # Highest valid start is n - seq_len - 1 so the target window still fits; randint's bound
    # is exclusive.
    starts = torch.randint(0, n - seq_len, (batch,), generator=generator)
    return _windows(data, starts, seq_len)


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


# --- reading ------------------------------------------------------------------------------


def _read_stdlib(max_bytes: int | None) -> tuple[bytes, int, str]:
    """The running interpreter's own library sources: present on every install, no download."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = _stdlib_files(root) if root.is_dir() else []
    chunks: list[bytes] = []
    total = 0
    for file in files:
        try:
            content = file.read_bytes()
        except OSError:
            continue  # an unreadable library file is not the user's problem; skip it
        if not content:
            continue
        chunks.append(content)
        total += len(content) + 1
        if max_bytes is not None and total >= max_bytes:
            break  # enough bytes; reading the rest would only be thrown away
    if not chunks:
        raise DataError(
            f"this Python installation has no standard library sources under '{root}'",
            "pass --data with a text file or a folder of text files",
        )
    return b"\n".join(chunks), len(chunks), f"python stdlib ({len(chunks)} files)"


def _stdlib_files(root: Path) -> list[Path]:
    """`.py` files under `root` in sorted relative-path order, skipping tests and packages."""
    found: list[tuple[str, Path]] = []
    for folder, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in _STDLIB_SKIP_DIRS]
        for name in filenames:
            if name.endswith(".py"):
                file = Path(folder) / name
                found.append((file.relative_to(root).as_posix(), file))
    found.sort()
    return [file for _, file in found]


def _read_user_path(path: Path, max_bytes: int | None) -> tuple[bytes, int, str]:
    """A file is taken as it is; a folder contributes each of its text files in order."""
    source = str(path)
    if not path.exists():
        raise DataError(f"data path '{path}' does not exist", _DATA_HINT)
    if path.is_dir():
        chunks = _read_text_files(path, max_bytes)
    else:
        content = _read_file(path, max_bytes)
        chunks = [content] if content else []
    if not chunks:
        raise DataError(
            f"data path '{path}' contains no text",
            "folders are read for non-empty text files; binary and hidden files are skipped",
        )
    return b"\n".join(chunks), len(chunks), source


def _read_text_files(root: Path, max_bytes: int | None) -> list[bytes]:
    chunks: list[bytes] = []
    total = 0
    for file in _folder_files(root):
        content = _read_file(file, None if max_bytes is None else max_bytes - total)
        if not content or b"\x00" in content[:_SNIFF_BYTES]:
            continue  # empty or binary: contributes no text
        chunks.append(content)
        total += len(content) + 1
        if max_bytes is not None and total >= max_bytes:
            break
    return chunks


def _folder_files(root: Path) -> list[Path]:
    """Non-hidden files under `root`, in sorted relative-path order."""
    found: list[tuple[str, Path]] = []
    for folder, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if not name.startswith("."):
                file = Path(folder) / name
                found.append((file.relative_to(root).as_posix(), file))
    found.sort()
    return [file for _, file in found]


def _read_file(path: Path, limit: int | None) -> bytes:
    """Read up to `limit` bytes, but always enough of the head to tell text from binary."""
    size = None if limit is None else max(limit, _SNIFF_BYTES)
    try:
        with path.open("rb") as handle:
            return handle.read() if size is None else handle.read(size)
    except OSError as exc:
        raise DataError(
            f"cannot read data file '{path}': {exc.strerror or exc}",
            "check the file's permissions, or point --data somewhere else",
        ) from exc


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
    data: torch.Tensor, starts: torch.Tensor, length: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of ``length + 1`` bytes from each start, split into inputs and next-byte targets."""
    offsets = torch.arange(length + 1)
    index = (starts[:, None] + offsets[None, :]).to(data.device)
    rows = data[index].long()
    return rows[:, :-1].contiguous(), rows[:, 1:].contiguous()
