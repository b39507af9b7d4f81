"""Words on the command line: overrides, --debug anywhere, formats, help text."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

import nestgraph.cli.common
from nestgraph.cli import app

runner = CliRunner()
COMMANDS = ("validate", "compile", "train", "convert", "generate", "eval", "fmt", "graph", "plot",
            "schema", "tokenizer")
# What each command runs as, a group (tokenizer) by its subcommand.
LEAVES = tuple("tokenizer train" if c == "tokenizer" else c for c in COMMANDS)


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_a_tilde_word_is_a_deletion_override():
    kept = invoke("validate", "cms", "--format", "json")
    assert kept.exit_code == 0, kept.output
    # Deleting a key the spec sets brings back its default: still valid, still one spec.
    result = invoke("validate", "cms", "~train.steps", "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["spec"] == "cms"


def test_a_tilde_word_that_deletes_nothing_names_the_override():
    result = invoke("validate", "cms", "~train.stpes")
    assert result.exit_code == 3, result.output
    assert "override #1 '~train.stpes'" in result.output and "steps" in result.output


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_before_or_after_the_command_shows_the_traceback(where):
    args = ["validate", "no/such/spec.yaml"]
    args = ["--debug", *args] if where == "before" else [*args, "--debug"]
    result = invoke(*args)
    assert result.exit_code == 3
    assert "Traceback" in result.output


@pytest.mark.parametrize("command", LEAVES)
def test_every_command_accepts_debug_after_it(command):
    result = invoke(*command.split(), "--debug", "--help")
    assert result.exit_code == 0, result.output
    assert "--debug" in result.output


def test_the_environment_variable_turns_debug_on(monkeypatch):
    monkeypatch.undo()  # the test suite's own NESTGRAPH_DEBUG switch, and its CLI guard
    assert nestgraph.cli.common._env_debug.__module__ == "nestgraph.cli.common"
    monkeypatch.setenv("NESTGRAPH_DEBUG", "1")
    assert "Traceback" in invoke("validate", "no/such/spec.yaml").output
    monkeypatch.setenv("NESTGRAPH_DEBUG", "0")
    assert "Traceback" not in invoke("validate", "no/such/spec.yaml").output


def test_validate_json_on_success():
    result = invoke("validate", "cms", "--format", "json")
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["ok"] is True and answer["spec"] == "cms"
    assert "cms_fast" in answer["levels"]


def test_validate_refuses_an_unknown_format():
    result = invoke("validate", "cms", "--format", "yaml")
    assert result.exit_code == 2
    assert "spec OK" not in result.output


def _summaries(text: str) -> list[str]:
    lines = text.split("Commands:", 1)[1].splitlines()
    return [line for line in lines if line.strip()]


def test_the_command_list_is_not_cut():
    result = invoke("--help")
    assert result.exit_code == 0
    summaries = _summaries(result.output)
    assert len(summaries) == len(COMMANDS)
    assert not [line for line in summaries if line.rstrip().endswith("...")]


@pytest.mark.parametrize("command", LEAVES)
def test_help_shows_metavars_not_python_names(command):
    result = invoke(*command.split(), "--help")
    assert result.exit_code == 0, result.output
    text = result.output
    assert "<list[" not in text and "{args}" not in text and "args..." not in text
    assert not re.search(r"<(str|int|float|path)>", text), text
    # Nothing is cut: a truncated word ends in '...' glued to a letter or comma.
    assert not re.search(r"[a-z,]\.\.\.(\s|$)", text.replace("PATH]...", "")), text


def test_spec_arguments_read_as_spec_and_overrides():
    text = invoke("compile", "--help").output
    assert "SPEC [PATH=VALUE|~PATH]..." in text
    assert "[BUILD|SPEC]" in invoke("train", "--help").output
