"""The command line: each verb, its exit codes, and what it must not import."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nestgraph.cli import app
from nestgraph.compiler import STAGE_NAMES
from nestgraph.testing import SMALL_CMS

runner = CliRunner()
SPECS = Path(__file__).resolve().parent.parent / "specs"


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.mark.parametrize("argv", [["--help"], ["validate", "cms"], ["validate", "cms.ng"], ["schema"],
                                  ["fmt", str(SPECS / "cms.ng"), "--check"]])
def test_light_commands_do_not_import_torch(argv):
    code = ("import sys\nfrom nestgraph.cli import app\n"
            f"try:\n    app({argv!r})\nexcept SystemExit:\n    pass\n"
            "print('TORCH', 'torch' in sys.modules, file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert "TORCH False" in done.stderr, done.stderr


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0 and result.output.startswith("nestgraph ")


def test_validate_ok_and_invalid(tmp_path):
    assert invoke("validate", SPECS / "cms.yaml").exit_code == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text((SPECS / "cms.yaml").read_text().replace("every: 16 tokens",
                                                             "every: 15 tokens"))
    result = invoke("validate", bad)
    assert result.exit_code == 3
    assert f"{bad}:" in result.output and "not a multiple" in result.output
    assert "Traceback" not in result.output


def test_validate_json_format(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text((SPECS / "cms.yaml").read_text().replace("heads: 4", "haeds: 4"))
    result = invoke("validate", bad, "--format", "json")
    assert result.exit_code == 3
    found = json.loads(result.stdout)
    assert found[0]["line"] > 0 and "heads" in found[0]["hint"]


def test_bad_override_is_a_spec_error():
    result = invoke("validate", "cms", "train.stpes=3")
    assert result.exit_code == 3 and "steps" in result.output


def test_missing_spec_file():
    result = invoke("validate", "no/such/spec.yaml")
    assert result.exit_code == 3 and "Traceback" not in result.output


def test_schema_is_json_schema():
    result = invoke("schema")
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert "levels" in schema["properties"] and "$defs" in schema


def test_compile_writes_the_build_and_emits_stages(tmp_path):
    out = tmp_path / "build" / "cms"
    result = invoke("compile", "cms", "-o", out)
    assert result.exit_code == 0, result.output
    for name in ("program.py", "plan.json", "spec.resolved.yaml", "spec.yaml"):
        assert (out / name).is_file()
    assert "cms_fast" in result.output and "FLOPs" in result.output
    for stage in STAGE_NAMES:
        shown = invoke("compile", "cms", "--emit", stage)
        assert shown.exit_code == 0 and shown.output.strip(), stage
    assert invoke("compile", "cms", "--emit", "nonsense").exit_code == 2


def test_train_generate_and_their_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert invoke("train").exit_code == 2  # no build yet: a usage problem
    assert invoke("compile", "cms", *SMALL_CMS).exit_code == 0
    result = invoke("train", "--steps", "2", "train.batch=1")
    assert result.exit_code == 0, result.output
    assert "most recent build" in result.output
    run = next((tmp_path / "runs" / "cms").iterdir())
    text = invoke("generate", run, "--prompt", "def ", "--tokens", "5")
    assert text.exit_code == 0 and text.output.startswith("def ")
    assert invoke("train", "--data", tmp_path / "missing.txt").exit_code == 5
    assert invoke("train", "model.dim=8").exit_code == 3
    assert invoke("generate", tmp_path).exit_code == 2


def test_ctrl_c_writes_a_checkpoint_and_exits_130(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "NESTGRAPH_DEBUG"}
    build = tmp_path / "build" / "cms"
    assert invoke("compile", "cms", "-o", build, *SMALL_CMS).exit_code == 0
    cmd = [sys.executable, "-m", "nestgraph", "train", str(build), "--steps", "100000",
           "--out", str(tmp_path / "runs"), "train.log_every=1"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    for line in proc.stderr:
        if line.startswith("step "):
            break
    proc.send_signal(signal.SIGINT)
    rest = proc.communicate(timeout=120)[1]
    assert proc.returncode == 130, rest
    assert "resume" in rest
    run = next((tmp_path / "runs" / "cms").iterdir())
    assert list((run / "checkpoints").glob("step-*"))


def test_shipped_schema_file_is_current():
    shipped = (SPECS.parent / "nestgraph.schema.json").read_text()
    assert shipped == invoke("schema").stdout, "run: nestgraph schema -o nestgraph.schema.json"


def test_train_time_settings_are_checked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert invoke("compile", "cms", *SMALL_CMS, "levels.cms_fast.meta=second_order").exit_code == 0
    bad_len = invoke("train", "--steps", "1", "train.seq_len=40")
    assert bad_len.exit_code == 3 and "seq_len 40" in bad_len.output
    assert invoke("train", "--steps", "1", "train.compile=on").exit_code == 4
    if not torch_cuda_available():
        assert invoke("train", "--steps", "1", "train.device=cuda").exit_code == 6
    done = invoke("train", "--steps", "1", "train.compile=off", "train.batch=1")
    assert done.exit_code == 0, done.output


def test_a_train_time_seq_len_within_a_mac_segment_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert invoke("compile", "titans-mac", "model.dim=16").exit_code == 0
    short = invoke("train", "--steps", "1", "train.seq_len=64")
    assert short.exit_code == 3, short.output
    assert "module 'mac' recalls only its initial memory" in short.output
    assert "segment: 64" in short.output  # shown at the segment in the resolved spec


def torch_cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def test_compile_a_ng_spec_keeps_it_as_given(tmp_path):
    out = tmp_path / "build"
    result = invoke("compile", SPECS / "transformer.ng", "train.steps=3", "-o", out)
    assert result.exit_code == 0, result.output
    assert (out / "spec.ng").read_text() == (SPECS / "transformer.ng").read_text()
    assert "steps: 3" in (out / "spec.resolved.yaml").read_text()
