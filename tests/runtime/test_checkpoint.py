from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from nestgraph.runtime.train.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)


def _tied_model() -> torch.nn.Module:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Linear(4, 10))
    model[1].weight = model[0].weight  # tied weights share storage
    return model


def _optimizer_state() -> dict[str, object]:
    # The shape of an AdamW state dict after one step, written out: building a real torch
    # optimizer imports torch's compiler stack, which alone takes seconds.
    return {
        "state": {
            0: {
                "step": torch.tensor(1.0),
                "exp_avg": torch.randn(10, 4),
                "exp_avg_sq": torch.rand(10, 4),
            },
            1: {
                "step": torch.tensor(1.0),
                "exp_avg": torch.randn(10),
                "exp_avg_sq": torch.rand(10),
            },
        },
        "param_groups": [
            {
                "lr": 0.01,
                "betas": (0.9, 0.999),
                "eps": 1e-08,
                "weight_decay": 0.01,
                "amsgrad": False,
                "foreach": None,
                "fused": None,
                "params": [0, 1],
            }
        ],
    }


def _save(run: Path, step: int, **kwargs: object) -> Path:
    return save_checkpoint(
        run, step, weights={"w": torch.full((2,), float(step))}, state={}, meta={}, **kwargs
    )


def test_round_trip(tmp_path: Path) -> None:
    model = _tied_model()
    optimizer = _optimizer_state()
    state = {
        "optimizer": optimizer,
        "rng": rng_state(),
        "streams": {"level1": [torch.ones(3), {"count": 4}]},
    }
    meta = {"tokens_seen": 1234, "best": 0.5, "name": "run"}
    path = save_checkpoint(tmp_path, 12, weights=dict(model.state_dict()), state=state, meta=meta)
    assert path == tmp_path / "checkpoints" / "step-00000012"
    assert sorted(p.name for p in path.iterdir()) == [
        "model.safetensors",
        "state.pt",
        "trainer_state.json",
    ]

    weights, loaded_state, loaded_meta = load_checkpoint(path)
    assert weights.keys() == model.state_dict().keys()
    for key, value in model.state_dict().items():
        assert torch.equal(weights[key], value)
    assert json.loads((path / "trainer_state.json").read_text()) == loaded_meta
    files = loaded_meta.pop("files")
    assert loaded_meta == {**meta, "step": 12}
    assert sorted(files) == ["model.safetensors", "state.pt"]

    loaded_opt = loaded_state["optimizer"]
    assert loaded_opt["param_groups"] == optimizer["param_groups"]
    for index, entry in optimizer["state"].items():
        for name, value in entry.items():
            assert torch.equal(loaded_opt["state"][index][name], value)
    assert torch.equal(loaded_state["streams"]["level1"][0], torch.ones(3))
    assert loaded_state["streams"]["level1"][1] == {"count": 4}


def test_rng_restore_reproduces_draws(tmp_path: Path) -> None:
    random.seed(5)
    torch.manual_seed(5)
    random.gauss(0, 1)  # leaves a cached gauss_next in python's state
    save_checkpoint(tmp_path, 1, weights={}, state={"rng": rng_state()}, meta={})
    expected = (random.random(), random.gauss(0, 1), torch.rand(4))

    random.seed(99)
    torch.manual_seed(99)
    _, state, _ = load_checkpoint(latest_checkpoint(tmp_path))
    set_rng_state(state["rng"])
    got = (random.random(), random.gauss(0, 1), torch.rand(4))
    assert got[:2] == expected[:2]
    assert torch.equal(got[2], expected[2])


def test_latest_pointer_and_fallback(tmp_path: Path) -> None:
    assert latest_checkpoint(tmp_path) is None
    _save(tmp_path, 5)
    _save(tmp_path, 20)
    _save(tmp_path, 10)  # latest follows the most recent save, not the highest step
    root = tmp_path / "checkpoints"
    assert (root / "latest").read_text().strip() == "step-00000010"
    assert latest_checkpoint(tmp_path) == root / "step-00000010"

    (root / "latest").write_text("../../elsewhere\n")
    assert latest_checkpoint(tmp_path) == root / "step-00000020"
    (root / "latest").unlink()
    assert latest_checkpoint(tmp_path) == root / "step-00000020"


def test_leftover_tmp_folder_is_ignored(tmp_path: Path) -> None:
    _save(tmp_path, 3)
    root = tmp_path / "checkpoints"
    (root / "latest").unlink()
    half = root / ".tmp-step-00000009-4242"
    half.mkdir()
    (half / "model.safetensors").write_bytes(b"partial")
    assert latest_checkpoint(tmp_path) == root / "step-00000003"


def test_same_step_is_replaced(tmp_path: Path) -> None:
    _save(tmp_path, 4)
    path = save_checkpoint(
        tmp_path, 4, weights={"w": torch.zeros(1)}, state={}, meta={"again": True}
    )
    weights, _, meta = load_checkpoint(path)
    assert torch.equal(weights["w"], torch.zeros(1)) and meta["again"] is True
    assert [p.name for p in (tmp_path / "checkpoints").iterdir() if p.is_dir()] == [path.name]


def test_keep_last_prunes_oldest(tmp_path: Path) -> None:
    for step in (1, 2, 3, 4):
        _save(tmp_path, step, keep_last=2)
    folders = sorted(p.name for p in (tmp_path / "checkpoints").iterdir() if p.is_dir())
    assert folders == ["step-00000003", "step-00000004"]


def test_unloadable_state_is_refused_at_save(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"state\['bad'\]"):
        save_checkpoint(tmp_path, 1, weights={}, state={"bad": object()}, meta={})
    assert latest_checkpoint(tmp_path) is None


def test_meta_step_must_agree(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="step"):
        save_checkpoint(tmp_path, 1, weights={}, state={}, meta={"step": 2})


def test_missing_and_corrupt_files(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nothing")
    path = _save(tmp_path, 1)
    (path / "state.pt").unlink()
    with pytest.raises(CheckpointError, match="missing state.pt") as info:
        load_checkpoint(path)
    assert info.value.hint

    path = _save(tmp_path, 2)
    (path / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_checkpoint(path)

    path = _save(tmp_path, 3)
    (path / "trainer_state.json").write_text("{broken")
    with pytest.raises(CheckpointError, match="trainer_state.json"):
        load_checkpoint(path)


def test_a_bit_flip_in_the_weights_is_refused(tmp_path: Path) -> None:
    path = _save(tmp_path, 1)
    raw = bytearray((path / "model.safetensors").read_bytes())
    raw[-1] ^= 0x01  # one bit of the last weight: the file still parses
    (path / "model.safetensors").write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="damaged model.safetensors"):
        load_checkpoint(path)


def test_a_bit_flip_in_the_state_is_refused(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path, 1, weights={}, state={"x": torch.zeros(4)}, meta={})
    raw = bytearray((path / "state.pt").read_bytes())
    raw[len(raw) // 2] ^= 0x01
    (path / "state.pt").write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="damaged state.pt"):
        load_checkpoint(path)


@pytest.mark.parametrize("change, words", [
    (lambda m: m.pop("data_sha256"), "no 'data_sha256' entry"),
    (lambda m: m.update(step="x"), "step is 'x'"),
    (lambda m: m.update(train=[]), "'train' is"),
])
def test_training_meta_entries_are_checked(tmp_path: Path, change, words) -> None:
    from nestgraph.runtime.train.checkpoint import read_training_meta

    meta = {"steps": 4, "data_sha256": "0" * 64, "spec_sha256": "1" * 64,
            "train": {}, "data": {}}
    path = save_checkpoint(tmp_path, 2, weights={}, state={}, meta=meta)
    assert read_training_meta(path)["step"] == 2
    stored = json.loads((path / "trainer_state.json").read_text())
    change(stored)
    (path / "trainer_state.json").write_text(json.dumps(stored))
    with pytest.raises(CheckpointError, match="trainer_state.json") as info:
        read_training_meta(path)
    assert words in info.value.message
