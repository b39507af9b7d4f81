"""Task generators: seeded, exact lengths, answers that are what the format says they are."""

from __future__ import annotations

import re

import pytest

from nestgraph.evaluation import generators as gen


@pytest.mark.parametrize("length", [17, 33, 100, 257])
def test_mqar_answers_are_the_values_of_their_keys(length):
    item = gen.mqar(length, seed=3)
    text = item.text.decode()
    assert len(item.text) == length
    pairs = re.findall(r"([a-z]{3})=([0-9]{2});", text)
    first = {}
    for key, value in pairs:
        first.setdefault(key, value)
    assert len(item.answers) >= 1
    for start, end in item.answers:
        key = text[start - 4:start - 1]
        assert text[start - 1] == "=" and text[start:end] == first[key]
        assert text.index(f"{key}=") < start - 4  # the key was given earlier


def test_mqar_keys_of_the_context_are_distinct():
    text = gen.mqar(200, seed=1).text.decode()
    keys = re.findall(r"([a-z]{3})=", text)
    queries = len(gen.mqar(200, seed=1).answers)
    assert len(set(keys)) == len(keys) - queries


@pytest.mark.parametrize("keys", [1, 4])
def test_needle_answer_is_the_passkey_asked_for(keys):
    item = gen.needle(300, keys=keys, seed=5)
    text = item.text.decode()
    assert len(item.text) == 300
    (start, end), = item.answers
    code = text[start:end]
    assert re.fullmatch(r"[0-9]{5}", code) and text[end] == "."
    question = text[text.rindex("\n") + 1:]
    if keys == 1:
        assert text.count(f"The passkey is {code}.") == 2
    else:
        colour = re.search(r"for (\w+)\?", question).group(1)
        assert text.count(f"The passkey for {colour} is {code}.") == 2
        assert len(re.findall(r"The passkey for \w+ is [0-9]{5}\. ", text)) == keys


def test_too_short_contexts_are_refused():
    with pytest.raises(ValueError):
        gen.needle(30)
    with pytest.raises(ValueError):
        gen.mqar(10)


def test_generators_are_pure_functions_of_their_seed():
    assert gen.mqar(120, seed=7) == gen.mqar(120, seed=7)
    assert gen.needle(200, keys=3, seed=7) == gen.needle(200, keys=3, seed=7)
    assert gen.mqar(120, seed=7) != gen.mqar(120, seed=8)
    assert gen.copy_string(9, seed=2) == gen.copy_string(9, seed=2)


@pytest.mark.parametrize("n", [1, 5, 12])
def test_formal_strings_are_well_formed(n):
    copy = gen.copy_string(n, seed=1)
    word = copy.text[1:n + 1]
    assert copy.text == b"#" + word + b"|" + word + b"." and copy.answer_bytes() == [word]
    par = gen.parity(n, seed=1)
    bits = par.text[1:n + 1].decode()
    assert par.answer_bytes() == [str(bits.count("1") % 2).encode()]
    ab = gen.anbn(n)
    assert re.fullmatch(rb"#(a+)(b+)\.", ab.text) and ab.text.count(b"a") == ab.text.count(b"b")
    assert ab.answer_bytes() == [b"b" * (n - 1) + b"."]  # determined after the first b
    abc = gen.anbncn(n)
    assert abc.text == b"#" + b"a" * n + b"b" * n + b"c" * n + b"."
    assert abc.answer_bytes() == [b"b" * (n - 1) + b"c" * n + b"."]
