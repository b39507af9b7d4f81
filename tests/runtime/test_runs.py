from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import torch

from nestgraph.runtime.train.checkpoint import CheckpointError
from nestgraph.runtime.train.runs import (
    MetricsLog,
    atomic_write_text,
    latest_run_dir,
    new_run_dir,
    read_metrics,
    write_env_json,
)

NOW = datetime(2024, 3, 5, 7, 8, 9, tzinfo=timezone.utc)


def test_new_run_dir_name_and_collisions(tmp_path: Path) -> None:
    first = new_run_dir(tmp_path, "demo", now=NOW)
    second = new_run_dir(tmp_path, "demo", now=NOW)
    third = new_run_dir(tmp_path, "demo", now=NOW)
    assert first == tmp_path / "demo" / "20240305-070809"
    assert second.name == "20240305-070809-1"
    assert third.name == "20240305-070809-2"
    assert first.is_dir() and second.is_dir() and third.is_dir()


def test_new_run_dir_uses_utc(tmp_path: Path) -> None:
    local = NOW.astimezone(timezone(timedelta(hours=5)))
    assert new_run_dir(tmp_path, "demo", now=local).name == "20240305-070809"


def test_latest_run_dir(tmp_path: Path) -> None:
    assert latest_run_dir(tmp_path, "demo") is None
    for name in (
        "20240101-000000",
        "20240305-070809",
        "20240305-070809-9",
        "20240305-070809-10",
        "notes",
    ):
        (tmp_path / "demo" / name).mkdir(parents=True)
    assert latest_run_dir(tmp_path, "demo") == tmp_path / "demo" / "20240305-070809-10"


def test_write_env_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "4")
    env = write_env_json(tmp_path, seed=7, command=["nestgraph", "train"], extra={"note": "x"})
    on_disk = json.loads((tmp_path / "env.json").read_text())
    assert on_disk == env
    assert env["seed"] == 7 and env["command"] == ["nestgraph", "train"]
    assert env["world_size"] == 4 and env["note"] == "x"
    assert env["torch"] == torch.__version__
    assert isinstance(env["nestgraph"], str) and env["nestgraph"]
    assert {"python", "platform", "cuda_available", "cuda_devices"} <= env.keys()
    assert list(tmp_path.iterdir()) == [tmp_path / "env.json"]  # no temp file left behind


def test_world_size_defaults_to_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert write_env_json(tmp_path, seed=0, command=[])["world_size"] == 1


def test_atomic_write_text_replaces(tmp_path: Path) -> None:
    target = tmp_path / "f.txt"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    assert list(tmp_path.iterdir()) == [target]


def test_metrics_log(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    with MetricsLog(path) as log:
        log.write({"step": 1, "loss": torch.tensor(2.5)})
        assert read_metrics(path) == [{"loss": 2.5, "step": 1}]  # flushed immediately
        log.write({"step": 2, "loss": 2.0})
    with MetricsLog(path) as log:  # a resumed run appends
        log.write({"step": 3, "loss": 1.5})
    lines = path.read_text().splitlines()
    assert len(lines) == 3
    assert [r["step"] for r in read_metrics(path)] == [1, 2, 3]


def test_read_metrics_skips_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"step": 2}\n{"ste')
    assert read_metrics(path) == [{"step": 1}, {"step": 2}]
    path.write_text('{"step": 1}\n{"ste\n{"step": 2}\n')
    with pytest.raises(CheckpointError, match=r"metrics.jsonl' line 2 is not a JSON record"):
        read_metrics(path)
