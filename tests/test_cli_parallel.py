"""`nestgraph train` options for several processes, checked without starting any."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from nestgraph.cli import app
from nestgraph.cli.launch import child_command, launcher_args
from nestgraph.errors import EXIT_COMPILE, EXIT_USAGE, UsageProblem
from nestgraph.testing import compile_build

runner = CliRunner()
TINY = ["model.dim=16", "train.batch=4"]


@pytest.fixture(scope="module")
def cms(tmp_path_factory):
    return compile_build(tmp_path_factory.mktemp("cms") / "build", "cms", TINY)


def test_dry_run_shows_each_rank_rows_and_what_each_level_shares(cms):
    result = runner.invoke(app, ["train", str(cms), "--nproc-per-node", "2", "--dry-run"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "rank 0: rows 0..1" in out and "rank 1: rows 2..3" in out
    lines = {line.split(" (")[0].strip(): line for line in out.splitlines() if " (" in line}
    assert "all-reduced (DDP), every step" in lines["outer"]
    assert "averaged over the ranks each time it fires (once every 16 steps)" \
        in lines["cms_slow"]
    assert "never communicated" in lines["cms_fast"]
    fsdp = runner.invoke(app, ["train", str(cms), "--nproc-per-node", "2", "--dry-run",
                               "train.parallel=fsdp"])
    assert "reduce-scattered (FSDP2)" in fsdp.output and "writes its shard" in fsdp.output


def test_a_global_batch_that_does_not_split_is_refused_before_any_process_starts(cms):
    result = runner.invoke(app, ["train", str(cms), "--nproc-per-node", "3"])
    assert result.exit_code == EXIT_USAGE
    assert "train.batch=4 does not split evenly over 3 processes" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(("spec", "level"), [("optimizers/dmgd", "deep_momentum"),
                                             ("optimizers/deep-gain", "gain_curve")])
def test_fsdp_refuses_a_memory_of_whole_gradients_and_says_why(tmp_path, spec, level):
    build = compile_build(tmp_path / "build", spec, TINY)
    result = runner.invoke(app, ["train", str(build), "--dry-run", "--nproc-per-node", "2",
                                 "train.parallel=fsdp"])
    assert result.exit_code == EXIT_COMPILE
    assert f"'{level}'" in result.output and "train.parallel=ddp" in result.output


def test_launcher_arguments_are_torchruns():
    child = child_command("build/cms", ["train.batch=4"], data=None, steps=5, out="runs",
                          resume="auto")
    one_node = launcher_args(2, "1", 0, None, child)
    assert one_node[:6] == ["--nproc-per-node", "2", "--nnodes", "1", "--max-restarts", "0"]
    assert "--standalone" in one_node
    assert one_node[-len(child) - 2:] == ["-m", "nestgraph", *child]
    assert child[:2] == ["train", "build/cms"] and "--steps" in child
    nodes = launcher_args(8, "2", 1, "head:29500", child)
    assert nodes[nodes.index("--rdzv-endpoint") + 1] == "head:29500"
    assert nodes[nodes.index("--node-rank") + 1] == "1" and "--standalone" not in nodes
    with pytest.raises(UsageProblem, match="--rdzv-endpoint"):
        launcher_args(8, "2", 0, None, child)
