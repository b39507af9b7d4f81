"""Tokenizers: the bytes every id stands for, batch encoding, corpora split before tokenizing."""

from __future__ import annotations

import sys

import pytest
import torch

from nestgraph.errors import EnvironmentProblem
from nestgraph.runtime.train import tokenizer as tk
from nestgraph.runtime.train.data import check_vocab, load_corpus, tokenize_corpus
from nestgraph.runtime.train.sources import DataError

tokenizers = pytest.importorskip("tokenizers")

# ASCII prose and code with the whitespace a pre-tokenizer treats specially: blank-line runs,
# indentation after a break, tabs, CRLF, trailing spaces.
TEXT = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\n\nAll:\n"
        "Speak, speak.\n  indented line\n\tdef f(x):\n\t\treturn x  \r\nend\n \n") * 20
UNICODE = "naïve café — 日本語 🎉 Ünïcödé\n\nß\x00\x7f ok\n"


@pytest.fixture(scope="module")
def bpe() -> tk.FileTokens:
    return tk.train_bpe([TEXT, UNICODE], 300)


def test_byte_alphabet_is_the_libraries(bpe):
    alphabet = tk.byte_alphabet()
    assert set(alphabet) == set(tokenizers.pre_tokenizers.ByteLevel.alphabet())
    assert sorted(alphabet.values()) == list(range(256))
    assert alphabet["A"] == 65 and alphabet[chr(0x100 + 10)] == 10  # "\n" is the 11th moved


@pytest.mark.parametrize("text", [TEXT, UNICODE, "x", " \n\n  \t"])
def test_ids_decode_to_the_bytes_as_the_library_decodes_them(bpe, text):
    ids = bpe.encode(text.encode())
    assert ids.dtype == torch.int32
    assert bpe.decode(ids) == text.encode()
    assert bpe.inner.decode(ids.tolist()) == text  # the library's own decoder: the reference
    assert int(bpe.lengths[ids.long()].sum()) == len(text.encode())


def test_batch_encoding_in_pieces_matches_encoding_the_whole_text(bpe):
    text = TEXT + UNICODE + TEXT.replace("\n", "\n\n")
    whole = bpe.inner.encode(text, add_special_tokens=False).ids
    pieces = [p for p in tk._PIECE_BREAK.split(text) if p]
    assert len(pieces) > 30  # cut often, so that agreement is not vacuous
    assert bpe.encode(text.encode()).tolist() == whole


def test_training_is_deterministic_and_merges(bpe):
    again = tk.train_bpe([TEXT, UNICODE], 300)
    assert again.text == bpe.text and again.sha256 == bpe.sha256
    assert bpe.vocab == 300 and bpe.expected_vocab == 300
    assert bpe.encode(TEXT.encode()).numel() < 0.6 * len(TEXT)  # merges learned


def test_saved_file_loads_with_the_same_ids(bpe, tmp_path):
    path = tmp_path / "tokenizer.json"
    path.write_text(bpe.text, encoding="utf-8")
    loaded = tk.load_tokenizer(path)
    assert loaded.vocab == 300 and loaded.sha256 == bpe.sha256
    assert torch.equal(loaded.encode(TEXT.encode()), bpe.encode(TEXT.encode()))


def test_a_tokenizer_that_changes_the_text_is_refused(bpe):
    bpe.inner.normalizer = tokenizers.normalizers.Lowercase()
    try:
        with pytest.raises(DataError, match="does not keep the text"):
            bpe.encode(b"Speak")
    finally:
        bpe.inner.normalizer = None


def test_a_tokenizer_that_is_not_byte_level_is_refused(tmp_path):
    from tokenizers import Tokenizer, models

    path = tmp_path / "words.json"
    Tokenizer(models.WordLevel({"[UNK]": 0, "hello": 1}, unk_token="[UNK]")).save(str(path))
    with pytest.raises(DataError, match="not byte-level: it has no token for byte 0x00"):
        tk.load_tokenizer(path)


@pytest.mark.parametrize(("content", "message"), [(None, "does not exist"),
                                                   ("{not json", "is not a tokenizers file")])
def test_bad_tokenizer_files_are_data_errors(tmp_path, content, message):
    path = tmp_path / "tokenizer.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(DataError, match=message):
        tk.load_tokenizer(path)


def test_text_must_be_utf8_but_a_character_cut_at_the_end_is_dropped(bpe):
    cut = "café".encode()[:-1]
    assert bpe.decode(bpe.encode(cut)) == b"caf"
    with pytest.raises(DataError, match="not UTF-8 text .byte 1 is 0xff"):
        bpe.encode(b"a\xffb")


def test_the_held_out_bytes_are_those_of_a_byte_level_run(bpe, tmp_path):
    raw = (TEXT + "é" * 40).encode()
    data = tmp_path / "data.txt"
    data.write_bytes(raw)
    # Cut inside an "é" (two bytes): the split moves its second byte to the training part.
    fraction = 1 - (len(TEXT) + 41 * 2 - 1 - 40) / len(raw)
    as_bytes = load_corpus(data, heldout_fraction=fraction)
    assert as_bytes.heldout[0] & 0xC0 == 0x80  # the byte split starts mid-character
    tokenized = tokenize_corpus(as_bytes, lambda train: bpe)
    held = bpe.decode(tokenized.heldout)
    assert held == bytes(as_bytes.heldout.tolist())[1:]
    assert bpe.decode(tokenized.train) + held == raw
    assert tokenized.sha256 != as_bytes.sha256  # the tokenizer is part of what a run read
    assert tokenize_corpus(as_bytes, lambda train: tk.ByteTokens()) is as_bytes


def test_vocab_must_match_the_tokenizer(bpe):
    corpus = tokenize_corpus(load_corpus(None, max_bytes=4096), lambda train: bpe)
    check_vocab(corpus, 300)
    for wrong in (256, 512):
        with pytest.raises(DataError, match=f"model.vocab is {wrong}.* has 300 tokens") as err:
            check_vocab(corpus, wrong)
        assert "model.vocab=300" in err.value.hint


def test_a_bpe_that_learns_fewer_tokens_than_asked_keeps_the_asked_vocab():
    small = tk.train_bpe(["abab"], 5000)
    assert small.vocab < 5000 and small.expected_vocab == 5000
    corpus = tokenize_corpus(load_corpus(None, max_bytes=4096), lambda train: small)
    check_vocab(corpus, 5000)
    with pytest.raises(DataError, match=r"5000 tokens \(it learned"):
        check_vocab(corpus, small.vocab)


def test_without_the_package_a_tokenizer_names_the_extra_and_bytes_still_work(monkeypatch,
                                                                              tmp_path):
    monkeypatch.setitem(sys.modules, "tokenizers", None)  # `import tokenizers` fails
    with pytest.raises(EnvironmentProblem, match="tokenizers") as err:
        tk.choose_tokenizer({"bpe": 300}, None, TEXT.encode())
    assert "nestgraph[tokenizers]" in err.value.hint and err.value.exit_code == 6
    with pytest.raises(EnvironmentProblem, match="not installed"):
        tk.choose_tokenizer("tokenizer.json", tmp_path, b"")
    corpus = load_corpus(None, max_bytes=4096)
    assert tokenize_corpus(corpus, lambda train: tk.choose_tokenizer("bytes", None, train)) \
        is corpus


def test_only_the_byte_level_split_is_encoded_in_pieces(bpe):
    # The cut at line breaks relies on the ByteLevel pre-tokenizer splitting there anyway; a
    # file whose pre-tokenizer does not (here: ByteLevel without its regex) is encoded whole.
    import json

    assert bpe.in_pieces
    doc = json.loads(bpe.text)
    doc["pre_tokenizer"]["use_regex"] = False
    other = tk.FileTokens(tokenizers.Tokenizer.from_str(json.dumps(doc)), json.dumps(doc), "x")
    assert not other.in_pieces
    text = "ab\ncd\nef\n"
    assert other.encode(text.encode()).tolist() == other.inner.encode(
        text, add_special_tokens=False).ids
