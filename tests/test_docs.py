"""The docs' examples run: every `ng` block of docs/dsl.md parses (whole specs validate), the
error example prints what the page says, and the page's grammar is the grammar."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from nestgraph.compiler import check_document
from nestgraph.errors import SpecError
from nestgraph.spec.dsl_front import load_dsl
from nestgraph.spec.dsl_parser import parser
from nestgraph.spec.source import format_diagnostics

ROOT = Path(__file__).resolve().parent.parent
DSL_DOC = (ROOT / "docs" / "dsl.md").read_text(encoding="utf-8")
BLOCK = re.compile(r"^```([\w-]+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def blocks(kind: str) -> list[str]:
    return [body for lang, body in BLOCK.findall(DSL_DOC) if lang == kind]


def test_the_page_has_examples() -> None:
    assert len(blocks("ng")) >= 6


@pytest.mark.parametrize("example", blocks("ng"), ids=lambda b: b.splitlines()[0][:40])
def test_ng_example_reads(example: str) -> None:
    data, source = load_dsl(example, "example.ng")
    if example.startswith("nestgraph 1"):
        spec, _ = check_document(data, source)
        assert spec.levels


def test_error_example_prints_what_the_page_shows() -> None:
    (broken,) = blocks("ng-error")
    shown = blocks("text")[0]
    with pytest.raises(SpecError) as caught:
        load_dsl(broken, "example.ng")
    assert format_diagnostics(caught.value.diagnostics, caught.value.source) + "\n" == shown


def test_the_grammar_on_the_page_is_the_grammar() -> None:
    (grammar,) = blocks("lark")
    assert grammar == (ROOT / "nestgraph" / "spec" / "grammar.lark").read_text(encoding="utf-8")


# ------------------------------------------------------------------------- editor grammar

TEXTMATE = ROOT / "editors" / "nestgraph.tmLanguage.json"


def test_the_textmate_grammar_knows_every_keyword() -> None:
    grammar = json.loads(TEXTMATE.read_text(encoding="utf-8"))
    assert grammar["scopeName"] == "source.nestgraph" and "ng" in grammar["fileTypes"]
    patterns = json.dumps(grammar)
    keywords = {t.pattern.value for t in parser().terminals
                if t.pattern.type == "str" and t.pattern.value.isalpha()}
    keywords |= {"token", "tokens", "step", "steps"}
    missing = {k for k in keywords if not re.search(rf"\b{k}\b", patterns)}
    assert not missing


def test_the_textmate_patterns_compile_and_match_a_spec() -> None:
    grammar = json.loads(TEXTMATE.read_text(encoding="utf-8"))
    lines = (ROOT / "specs" / "hope.ng").read_text(encoding="utf-8").splitlines()
    for name, rule in grammar["repository"].items():
        for part in [rule] if ("match" in rule or "begin" in rule) else rule["patterns"]:
            regex = re.compile(part.get("match") or part.get("begin"))  # TextMate: line by line
            assert any(regex.search(line) for line in lines), f"{name}: matches no line"


def test_the_optimizer_page_example_runs() -> None:
    page = (ROOT / "docs" / "optimizers.md").read_text(encoding="utf-8")
    (example,) = [body for lang, body in BLOCK.findall(page) if lang == "python"]
    namespace: dict = {}
    exec(compile(example, "docs/optimizers.md", "exec"), namespace)  # noqa: S102
    assert namespace["state"]["state"]  # the optimizer kept its memories


def test_the_optimizer_page_spec_excerpt_is_m3() -> None:
    import yaml

    page = (ROOT / "docs" / "optimizers.md").read_text(encoding="utf-8")
    (excerpt,) = [body for lang, body in BLOCK.findall(page) if lang == "yaml"]
    shown = yaml.safe_load("levels:\n" + excerpt)["levels"]
    shipped = yaml.safe_load((ROOT / "specs" / "optimizers" / "m3.yaml").read_text())["levels"]
    assert shown == [lv for lv in shipped if lv["name"] != "attention"]


# ------------------------------------------------------------------ README: tokenizers


def test_the_readme_tokenizer_commands_run(tmp_path, monkeypatch) -> None:
    """The README's tokenizer block, as written, on a small text; only the run's size is cut
    down (overrides appended, so the last --steps wins) and RUN is the run just trained."""
    import random
    import shlex

    from typer.testing import CliRunner

    from nestgraph.cli import app

    pytest.importorskip("tokenizers")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Tokenizers", 1)[1]
    (block,) = [body for lang, body in BLOCK.findall(section)[:1] if lang == "bash"]
    monkeypatch.chdir(tmp_path)
    rng = random.Random(0)  # words varied enough for 512 tokens' worth of merges
    words = ["".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(2, 7)))
             for _ in range(4000)]
    (tmp_path / "corpus.txt").write_text("ROMEO:\n" + " ".join(words) + "\n")
    small = ["--steps", "2", "train.batch=2", "train.seq_len=32", "model.dim=16",
             "train.eval_batches=1", "train.threads=1"]
    lines = block.strip().splitlines()
    assert len(lines) == 4 and all(line.startswith("nestgraph ") for line in lines)
    for line in lines:
        args = shlex.split(line)[1:]
        if args[0] == "train":
            args += small
        runs = tmp_path / "runs" / "transformer"
        if "runs/transformer/RUN" in args:
            args[args.index("runs/transformer/RUN")] = str(max(runs.iterdir()))
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, (line, result.output)
    assert (max(runs.iterdir()) / "tokenizer.json").is_file()


# ------------------------------------------------------------------ README: Hugging Face


def test_the_readme_hugging_face_example_runs(tmp_path, monkeypatch) -> None:
    """The README's tiny Llama saved, compiled twice, converted twice, and trained from."""
    import shlex

    from typer.testing import CliRunner

    from nestgraph.cli import app

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### From a Hugging Face checkpoint", 1)[1].split("\n### ", 1)[0]
    (python,) = [body for lang, body in BLOCK.findall(section) if lang == "python"]
    (bash,) = [body for lang, body in BLOCK.findall(section) if lang == "bash"]
    monkeypatch.chdir(tmp_path)
    exec(compile(python, "README.md", "exec"), {})  # noqa: S102
    commands = bash.replace("\\\n", " ").splitlines()
    assert [shlex.split(c)[1] for c in commands] == ["compile", "convert"] * 2 + ["train"]
    shown = []
    for command in commands:
        words = shlex.split(command)[1:]
        quick = ["train.threads=1", "train.batch=2"] if words[0] == "train" else []
        result = CliRunner().invoke(app, words + quick)
        assert result.exit_code == 0, (command, result.output)
        shown.append(result.output)
    # Every Transformer weight comes from the Llama; Hope-Attention's zeroed blocks keep
    # their fresh input layers (their outputs are zero).
    assert "copied 17 weights, zeroed 0, left 0 at their initial values" in shown[1]
    assert "copied 17 weights, zeroed 4, left 4 at their initial values" in shown[3]
    assert "not used from the source" not in shown[1] + shown[3]
