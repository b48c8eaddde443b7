"""Model and checkpoint paths never unpickle: crafted pickles are refused, never run."""

from __future__ import annotations

import pickle
import shutil

import pytest
import torch

from deeprec.base import load_model
from deeprec.cli import main
from deeprec.errors import CheckpointError
from deeprec.runs.training import resume_run, train_run
from deeprec.safe_files import load_torch_state_dict, refuse_pickle, sniff
from deeprec.train.checkpoint import checkpoint_name, latest_checkpoint, read_checkpoint
from deeprec.train.config import TrainConfig

from .conftest import SETTINGS


class Payload:
    """Unpickling this creates `marker` (stands in for arbitrary code)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def evil(tmp_path):
    """(pickle bytes whose loading creates the marker file, marker path)."""
    marker = tmp_path / "PWNED"
    proof = tmp_path / "proof"
    pickle.loads(pickle.dumps(Payload(proof)))  # the payload really runs when unpickled
    assert proof.exists()
    return pickle.dumps(Payload(marker)), marker


@pytest.fixture(scope="module")
def finished_run(prepared, tmp_path_factory):
    run = tmp_path_factory.mktemp("pickle") / "run"
    config = TrainConfig().with_overrides([*SETTINGS, "epochs=2", "checkpoint_keep=3"])
    train_run(prepared, config, run, progress=False, echo=lambda _m: None)
    return run


def test_pickle_as_newest_checkpoint_is_skipped_not_run(finished_run, evil, tmp_path):
    data, marker = evil
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    (run / "checkpoints" / checkpoint_name(9, 0)).write_bytes(data)
    warnings: list[str] = []
    ckpt = latest_checkpoint(run / "checkpoints", warn=warnings.append)
    assert ckpt.epoch == 3  # fell back to the newest good checkpoint
    assert "Python pickle" in warnings[0] and "arbitrary code" in warnings[0]
    assert not marker.exists()


def test_pickle_as_only_checkpoint_is_refused(finished_run, evil, tmp_path):
    data, marker = evil
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    for old in (run / "checkpoints").iterdir():
        old.unlink()
    (run / "checkpoints" / checkpoint_name(2, 0)).write_bytes(data)
    with pytest.raises(CheckpointError, match=r"no usable checkpoint.*pickle"):
        resume_run(run, progress=False, echo=lambda _m: None)
    assert not marker.exists()


@pytest.mark.parametrize("name", ["model.pt", "model.pkl", "weights", "model.safetensors"])
def test_pickle_as_model_file_is_refused(evil, tmp_path, name):
    data, marker = evil
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(CheckpointError, match="refusing to load"):
        load_model(path)
    with pytest.raises(CheckpointError, match="refusing to load"):
        read_checkpoint(path)
    assert not marker.exists()


def test_pickle_inside_a_model_directory_is_refused(finished_run, evil, tmp_path):
    data, marker = evil
    model = tmp_path / "best"
    shutil.copytree(finished_run / "best", model)
    (model / "weights.safetensors").write_bytes(data)
    with pytest.raises(CheckpointError, match="Python pickle"):
        load_model(model)
    assert not marker.exists()


def test_torch_save_archive_and_protocol0_pickle_are_refused(tmp_path):
    archive = tmp_path / "state.bin.safetensors"
    torch.save({"w": torch.ones(2)}, archive)
    assert sniff(archive) == "torch-zip"
    with pytest.raises(CheckpointError, match=r"torch\.save archive"):
        refuse_pickle(archive)
    old = tmp_path / "old.safetensors"
    old.write_bytes(pickle.dumps({"a": 1}, protocol=0))
    with pytest.raises(CheckpointError, match="Python pickle"):
        refuse_pickle(old)


def test_cli_refuses_pickle_paths(evil, tmp_path, capsys):
    data, marker = evil
    path = tmp_path / "model.pt"
    path.write_bytes(data)
    for argv in (
        ["evaluate", "--run", str(path)],
        ["train", "--resume", str(path)],
        ["serve", "--run", str(path)],
        ["recommend", "--run", str(path), "--user", "1"],
        ["predict", "--run", str(path), "--pairs", str(path), "--out", str(path) + ".csv"],
    ):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2
        assert "refusing to load" in capsys.readouterr().err
    assert not marker.exists()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_opt_in_weights_only_loader(evil, tmp_path):
    data, marker = evil
    plain = tmp_path / "plain.pt"
    torch.save({"w": torch.arange(3.0)}, plain)
    assert torch.equal(load_torch_state_dict(plain, weights_only=True)["w"], torch.arange(3.0))
    with pytest.raises(CheckpointError, match="only read with weights_only=True"):
        load_torch_state_dict(plain, weights_only=False)
    bad = tmp_path / "evil.pt"
    bad.write_bytes(data)
    with pytest.raises(CheckpointError, match="not a plain PyTorch state_dict"):
        load_torch_state_dict(bad, weights_only=True)
    assert not marker.exists()


def test_safetensors_whose_header_length_starts_like_a_pickle_is_safetensors(tmp_path):
    """A header of 0x0380 bytes begins with 0x80 0x03 (the pickle PROTO 3 opcode)."""
    import json
    import struct

    header = json.dumps({"__metadata__": {"pad": ""}}).encode()
    header += b" " * (0x380 - len(header))
    path = tmp_path / "w.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header)
    assert path.read_bytes()[:2] == b"\x80\x03"
    assert sniff(path) == "safetensors"
    for protocol in (2, 3, 4, 5):
        evil = tmp_path / f"p{protocol}.safetensors"
        evil.write_bytes(pickle.dumps({"a": list(range(100))}, protocol=protocol))
        assert sniff(evil) == "pickle"
