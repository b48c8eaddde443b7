"""Damaged checkpoints and model files (truncated, any single byte changed) are refused with
CheckpointError, never loaded with wrong values; resume falls back to the previous one."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deeprec.base import load_model
from deeprec.errors import CheckpointError, DataError
from deeprec.runs.training import train_run
from deeprec.train.checkpoint import latest_checkpoint, list_checkpoints, read_checkpoint
from deeprec.train.config import TrainConfig

from .conftest import SETTINGS

MAX_EXAMPLES = 200
CASES = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@pytest.fixture(scope="module")
def run(prepared, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("corrupt") / "run"
    config = TrainConfig().with_overrides([*SETTINGS, "epochs=2", "hidden=[8]"])
    train_run(prepared, config, out, progress=False, echo=lambda _m: None)
    return out


@pytest.fixture(scope="module")
def original(run) -> bytes:
    return list_checkpoints(run / "checkpoints")[0].read_bytes()


@CASES
@given(data=st.data())
def test_damaged_checkpoint_is_refused(run, original, tmp_path_factory, data):
    damaged = bytearray(original)
    if data.draw(st.booleans(), label="truncate"):
        damaged = damaged[: data.draw(st.integers(0, len(damaged) - 1), label="length")]
    else:
        at = data.draw(st.integers(0, len(damaged) - 1), label="offset")
        damaged[at] ^= data.draw(st.integers(1, 255), label="xor")
    path = tmp_path_factory.mktemp("damaged") / "ckpt-e000009-b00000000.safetensors"
    path.write_bytes(bytes(damaged))
    with pytest.raises(CheckpointError):
        read_checkpoint(path)


def test_resume_skips_a_damaged_newest_checkpoint(run, original, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    newest = list_checkpoints(copy / "checkpoints")[0]
    newest.write_bytes(original[: len(original) // 2])
    warnings: list[str] = []
    ckpt = latest_checkpoint(copy / "checkpoints", warn=warnings.append)
    assert ckpt.path != newest and "skipping damaged checkpoint" in warnings[0]


@pytest.mark.parametrize("name", ["model.json", "weights.safetensors", "user_ids.npy"])
@pytest.mark.parametrize("how", ["truncate", "empty", "missing"])
def test_damaged_model_directory_is_refused(run, tmp_path, name, how):
    model = tmp_path / "best"
    shutil.copytree(run / "best", model)
    target = model / name
    if how == "missing":
        target.unlink()
    else:
        data = target.read_bytes()
        target.write_bytes(b"" if how == "empty" else data[: len(data) // 2])
    with pytest.raises((CheckpointError, DataError)):
        load_model(model)


@pytest.mark.parametrize("how", ["truncate", "empty", "missing", "pickled"])
def test_damaged_prepared_dataset_is_refused(prepared, tmp_path, how):
    import numpy as np

    from deeprec.data.dataset import PreparedDataset

    for name in ("meta.json", "user_ids.npy", "train/ratings.npy", "valid/items.npy"):
        copy = tmp_path / f"{how}-{name.replace('/', '-')}"
        shutil.copytree(prepared, copy)
        target = copy / name
        if how == "missing":
            target.unlink()
        elif how == "pickled":  # an object array: loading it would need pickle
            with open(target, "wb") as handle:
                np.save(handle, np.array([{"a": 1}], dtype=object), allow_pickle=True)
        else:
            data = target.read_bytes()
            target.write_bytes(b"" if how == "empty" else data[: len(data) // 2])
        with pytest.raises(DataError) as info:
            PreparedDataset.load(copy)
        assert str(copy) in str(info.value)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(CASES, max_examples=100)
@given(
    edit=st.dictionaries(
        st.sampled_from(
            [
                "class",
                "params",
                "n_users",
                "n_items",
                "rating_range",
                "global_mean",
                "fitted",
                "format_version",
            ]
        ),
        JSON,
        min_size=1,
        max_size=3,
    )
    | JSON
)
def test_tampered_model_json_is_refused_or_loads(run, tmp_path_factory, edit):
    """model.json edited by hand (any JSON): a DeepRecError, never a crash of another kind."""
    import json

    from deeprec.errors import DeepRecError

    model = tmp_path_factory.mktemp("tampered") / "best"
    shutil.copytree(run / "best", model)
    info = json.loads((model / "model.json").read_text())
    if isinstance(edit, dict) and set(edit) <= set(info):
        info.update(edit)
    else:
        info = edit
    (model / "model.json").write_text(json.dumps(info))
    with contextlib.suppress(DeepRecError):
        load_model(model)


def test_model_json_claiming_huge_layers_is_refused_before_allocating(run, tmp_path):
    import json

    model = tmp_path / "best"
    shutil.copytree(run / "best", model)
    info = json.loads((model / "model.json").read_text())
    info["params"]["hidden"] = [4_000_000_000]  # 40 items x 4e9 floats = 640 GB if built
    (model / "model.json").write_text(json.dumps(info))
    with pytest.raises(CheckpointError, match="encoder layer 0"):
        load_model(model)
