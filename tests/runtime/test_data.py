from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import torch

from nestgraph.errors import TrainingError
from nestgraph.runtime.train import sources as data_mod
from nestgraph.runtime.train.data import Corpus, heldout_batches, load_corpus, sample_batch
from nestgraph.runtime.train.sources import DataError


def _bytes(corpus: Corpus) -> bytes:
    return bytes(torch.cat([corpus.train, corpus.heldout]).tolist())


def test_default_corpus_is_stdlib_and_stable() -> None:
    first = load_corpus(None, max_bytes=300_000)
    second = load_corpus(None, max_bytes=300_000)
    assert first.source.startswith("python stdlib (")
    assert first.n_files > 0
    assert first.train.dtype == torch.uint8 and first.train.dim() == 1
    assert first.train.numel() + first.heldout.numel() == 300_000
    assert first.sha256 == second.sha256
    assert torch.equal(first.train, second.train)
    assert hashlib.sha256(_bytes(first)).hexdigest() == first.sha256


def test_default_corpus_file_selection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lib = tmp_path / "lib"
    for rel, text in {
        "b.py": "B",
        "a.py": "A",
        "pkg/c.py": "C",
        "notes.txt": "not python",
        "test/t.py": "T",
        "pkg/tests/t.py": "T",
        "idlelib/i.py": "I",
        "site-packages/s.py": "S",
        "dist-packages/d.py": "D",
        "pkg/__pycache__/x.py": "X",
    }.items():
        (lib / rel).parent.mkdir(parents=True, exist_ok=True)
        (lib / rel).write_text(text)
    monkeypatch.setattr(data_mod.sysconfig, "get_paths", lambda: {"stdlib": str(lib)})
    corpus = load_corpus(None, heldout_fraction=0.2)
    assert _bytes(corpus) == b"A\nB\nC"
    assert corpus.n_files == 3
    assert corpus.source == "python stdlib (3 files)"


def test_default_corpus_missing_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data_mod.sysconfig, "get_paths", lambda: {"stdlib": str(tmp_path)})
    with pytest.raises(DataError) as info:
        load_corpus(None)
    assert "--data" in (info.value.hint or "")


def test_single_file(tmp_path: Path) -> None:
    file = tmp_path / "text.txt"
    file.write_bytes(b"0123456789" * 10)
    corpus = load_corpus(file, heldout_fraction=0.1)
    assert corpus.train.numel() == 90 and corpus.heldout.numel() == 10
    assert bytes(corpus.heldout.tolist()) == b"0123456789"
    assert corpus.source == str(file)
    assert corpus.n_files == 1
    assert corpus.sha256 == hashlib.sha256(b"0123456789" * 10).hexdigest()


def test_folder_order_and_skipping(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / ".hidden").mkdir()
    (tmp_path / "b.txt").write_bytes(b"bee")
    (tmp_path / "a.txt").write_bytes(b"ay")
    (tmp_path / "sub" / "c.md").write_bytes(b"sea")
    (tmp_path / "image.bin").write_bytes(b"\x89PNG\x00\x00data")
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / ".secret").write_bytes(b"hidden file")
    (tmp_path / ".hidden" / "x.txt").write_bytes(b"hidden folder")
    corpus = load_corpus(tmp_path, heldout_fraction=0.1)
    assert _bytes(corpus) == b"ay\nbee\nsea"
    assert corpus.n_files == 3


def test_truncation_changes_hash(tmp_path: Path) -> None:
    file = tmp_path / "t.txt"
    file.write_bytes(b"x" * 1000)
    corpus = load_corpus(file, max_bytes=100)
    assert corpus.train.numel() + corpus.heldout.numel() == 100
    assert corpus.sha256 == hashlib.sha256(b"x" * 100).hexdigest()


def test_tiny_input_still_splits(tmp_path: Path) -> None:
    file = tmp_path / "t.txt"
    file.write_bytes(b"ab")
    corpus = load_corpus(file)
    assert bytes(corpus.train.tolist()) == b"a"
    assert bytes(corpus.heldout.tolist()) == b"b"


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist") as info:
        load_corpus(tmp_path / "nope.txt")
    assert info.value.hint
    assert isinstance(info.value, TrainingError)
    assert str(info.value) == f"data path '{tmp_path / 'nope.txt'}' does not exist"


def test_empty_file_and_binary_only_folder(tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="contains no text"):
        load_corpus(empty)
    folder = tmp_path / "bin"
    folder.mkdir()
    (folder / "x.bin").write_bytes(b"\x00\x01\x02")
    with pytest.raises(DataError, match="contains no text"):
        load_corpus(folder)


def test_one_byte_is_too_small(tmp_path: Path) -> None:
    file = tmp_path / "t.txt"
    file.write_bytes(b"a")
    with pytest.raises(DataError, match="at least 2"):
        load_corpus(file)


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    file = tmp_path / "locked.txt"
    file.write_bytes(b"secret")
    real_open = Path.open

    def refuse(self: Path, *args: object, **kwargs: object):
        if self == file:
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", refuse)
    with pytest.raises(DataError, match="cannot read data file") as info:
        load_corpus(tmp_path)
    assert "Permission denied" in str(info.value)
    assert isinstance(info.value.__cause__, PermissionError)


def test_bad_fraction() -> None:
    with pytest.raises(DataError, match="heldout_fraction"):
        load_corpus(None, heldout_fraction=1.0)


def _ramp(n: int = 5000) -> torch.Tensor:
    return (torch.arange(n) % 251).to(torch.uint8)


def test_sample_batch_shapes_and_shift() -> None:
    data = _ramp()
    x, y = sample_batch(data, step=3, batch=4, seq_len=16, seed=0)
    assert x.shape == y.shape == (4, 16)
    assert x.dtype == y.dtype == torch.int64
    assert torch.equal(x[:, 1:], y[:, :-1])
    # The ramp means each target is the next value of the ramp.
    assert torch.equal(y, (x + 1) % 251)


def test_sample_batch_is_pure_function_of_seed_and_step() -> None:
    data = _ramp()
    a = sample_batch(data, step=7, batch=8, seq_len=16, seed=1)
    torch.manual_seed(1234)  # the global generator must not matter
    b = sample_batch(data, step=7, batch=8, seq_len=16, seed=1)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    other_step = sample_batch(data, step=8, batch=8, seq_len=16, seed=1)
    other_seed = sample_batch(data, step=7, batch=8, seq_len=16, seed=2)
    assert not torch.equal(a[0], other_step[0])
    assert not torch.equal(a[0], other_seed[0])


def test_sample_batch_on_smallest_data() -> None:
    data = torch.tensor([1, 2, 3], dtype=torch.uint8)
    x, y = sample_batch(data, step=0, batch=2, seq_len=2, seed=0)
    assert x.tolist() == [[1, 2], [1, 2]] and y.tolist() == [[2, 3], [2, 3]]


def test_sample_batch_too_small() -> None:
    with pytest.raises(DataError, match="seq_len=8") as info:
        sample_batch(_ramp(8), step=0, batch=1, seq_len=8, seed=0)
    assert "seq_len" in (info.value.hint or "")


def test_heldout_batches_even_spacing_and_cap() -> None:
    data = _ramp(1001)
    batches = heldout_batches(data, batch=2, seq_len=10, max_batches=3)
    assert len(batches) == 3
    firsts = [int(row[0]) for x, _ in batches for row in x]
    # Six windows spread over the whole span (0..990), not packed at the front.
    assert firsts == [start % 251 for start in (0, 198, 396, 594, 792, 990)]
    for x, y in batches:
        assert x.shape == (2, 10)
        assert torch.equal(y, (x + 1) % 251)
    again = heldout_batches(data, batch=2, seq_len=10, max_batches=3)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, again, strict=True))


def test_heldout_batches_all_windows_when_few_fit() -> None:
    batches = heldout_batches(_ramp(36), batch=4, seq_len=5, max_batches=10)
    rows = torch.cat([x for x, _ in batches])
    assert rows.shape == (7, 5)  # (36 - 1) // 5 windows; the last batch is short
    assert [len(x) for x, _ in batches] == [4, 3]


def test_heldout_batches_tiny_data_fallback() -> None:
    data = torch.tensor([10, 20, 30, 40], dtype=torch.uint8)
    batches = heldout_batches(data, batch=8, seq_len=64, max_batches=4)
    assert len(batches) == 1
    x, y = batches[0]
    assert x.tolist() == [[10, 20, 30]] and y.tolist() == [[20, 30, 40]]
    with pytest.raises(DataError):
        heldout_batches(data[:1], batch=1, seq_len=4, max_batches=1)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_special_files_are_refused_or_skipped(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(DataError, match="named pipe .* not a regular file or folder"):
        load_corpus(tmp_path / "pipe")
    (tmp_path / "a.txt").write_bytes(b"text next to a pipe")
    assert _bytes(load_corpus(tmp_path, heldout_fraction=0.1)) == b"text next to a pipe"


def test_folder_walk_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(5):
        (tmp_path / f"{i}.txt").write_bytes(b"x" * 10)
    monkeypatch.setattr(data_mod, "MAX_FILES", 2)
    assert load_corpus(tmp_path, heldout_fraction=0.1).n_files == 2
    monkeypatch.setattr(data_mod, "MAX_FILES", 100)


def test_folder_walk_stops_at_max_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(4):
        (tmp_path / f"sub{i}").mkdir()
        (tmp_path / f"sub{i}" / "t.txt").write_bytes(b"x" * 10)
    listed: list[str] = []
    real_scandir = os.scandir

    def spy(path):
        listed.append(str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", spy)
    load_corpus(tmp_path, heldout_fraction=0.1, max_bytes=15)
    assert len(listed) == 3  # the root, sub0, sub1: enough bytes, the rest is never listed


def test_folder_walk_order_matches_sorted_relative_paths(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.txt").write_bytes(b"in a")
    (tmp_path / "a-b.txt").write_bytes(b"a-b")  # '-' sorts before '/'
    (tmp_path / "ab").mkdir()
    (tmp_path / "ab" / "y.txt").write_bytes(b"in ab")
    assert _bytes(load_corpus(tmp_path, heldout_fraction=0.1)) == b"a-b\nin a\nin ab"


def test_unreadable_files_in_a_folder_are_skipped(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a.txt").write_bytes(b"readable")
    locked = tmp_path / "b.txt"
    locked.write_bytes(b"locked")
    real_open = Path.open

    def refuse(self: Path, *args: object, **kwargs: object):
        if self == locked:
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", refuse)
    assert _bytes(load_corpus(tmp_path, heldout_fraction=0.1)) == b"readable"


def test_separate_heldout_source(tmp_path: Path) -> None:
    (tmp_path / "train.txt").write_bytes(b"training text")
    (tmp_path / "valid.txt").write_bytes(b"validation")
    corpus = load_corpus(tmp_path / "train.txt", heldout_path=tmp_path / "valid.txt")
    assert bytes(corpus.train.tolist()) == b"training text"
    assert bytes(corpus.heldout.tolist()) == b"validation"
    alone = load_corpus(tmp_path / "train.txt")
    assert corpus.sha256 != alone.sha256  # the held-out data is part of what a run used


def test_resolve_source_against_a_base_folder(tmp_path: Path) -> None:
    from nestgraph.runtime.train.data import resolve_source

    assert resolve_source("data/x.txt", tmp_path) == str(tmp_path / "data" / "x.txt")
    assert resolve_source("/abs/x.txt", tmp_path) == "/abs/x.txt"
    assert resolve_source("stdlib", tmp_path) == "stdlib"
    assert resolve_source("x.txt", None) == "x.txt"
    assert resolve_source(None, tmp_path) is None


def test_check_vocab() -> None:
    from nestgraph.runtime.train.data import check_vocab

    text = Corpus(train=torch.tensor([65, 66], dtype=torch.uint8),
                  heldout=torch.tensor([200], dtype=torch.uint8), source="t", sha256="", n_files=1)
    check_vocab(text, 256)
    with pytest.raises(DataError, match="model.vocab is 128.*byte value 200"):
        check_vocab(text, 128)


def test_stream_order_reads_each_lane_contiguously() -> None:
    n = 1000
    data = torch.arange(n, dtype=torch.int32)  # each byte's value is its position
    rows = [sample_batch(data, step=s, batch=4, seq_len=16, seed=0, order="stream")
            for s in range(3)]
    for lane in range(4):
        start = lane * n // 4
        for s, (x, y) in enumerate(rows):
            assert x[lane].tolist() == list(range(start + 16 * s, start + 16 * s + 16))
            assert torch.equal(y[lane], x[lane] + 1)
        # The next step continues exactly where this one stopped.
        assert int(rows[1][0][lane, 0]) == int(rows[0][0][lane, -1]) + 1


def test_stream_order_wraps_and_ignores_the_seed() -> None:
    data = torch.arange(100, dtype=torch.int32)
    x, y = sample_batch(data, step=6, batch=1, seq_len=16, seed=0, order="stream")
    assert x[0].tolist() == [(96 + i) % 100 for i in range(16)]  # past the end: the start
    assert y[0].tolist() == [(97 + i) % 100 for i in range(16)]
    other = sample_batch(data, step=6, batch=1, seq_len=16, seed=5, order="stream")
    assert torch.equal(x, other[0])  # a pure function of (data, step)


def test_unknown_order_is_refused() -> None:
    with pytest.raises(ValueError, match="order"):
        sample_batch(_ramp(), step=0, batch=1, seq_len=4, seed=0, order="sorted")
