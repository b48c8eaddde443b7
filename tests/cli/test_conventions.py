"""One flag convention across commands, and packaged presets by name (--config ml-100k)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
import yaml

from deeprec.cli import _register_all, app
from deeprec.errors import ConfigError
from deeprec.presets import config_path, preset_names, preset_text

SRC = Path(__file__).resolve().parents[2] / "src"


def _commands() -> dict:
    _register_all()
    return dict(typer.main.get_command(app).commands)


def test_out_and_quiet_have_the_same_short_flags_everywhere() -> None:
    seen = {"--out": 0, "--quiet": 0}
    for name, command in _commands().items():
        for param in command.params:
            opts = set(param.opts)
            if "--out" in opts:
                assert "-o" in opts, f"{name} --out lacks -o"
                seen["--out"] += 1
            if "--quiet" in opts:
                assert "-q" in opts, f"{name} --quiet lacks -q"
                seen["--quiet"] += 1
    assert seen["--out"] >= 8 and seen["--quiet"] >= 5


def test_config_path_finds_files_then_presets(tmp_path: Path) -> None:
    for name in preset_names():
        assert config_path(name).read_text() == preset_text(name)
        assert config_path(f"{name}.yaml").read_text() == preset_text(name)
    own = tmp_path / "ml-100k.yaml"
    own.write_text("epochs: 1\n")
    assert config_path(own) == own  # an existing file always wins
    with pytest.raises(ConfigError, match=r"not a preset.*ml-100k"):
        config_path("ml-100m")
    with pytest.raises(ConfigError, match="no such file"):
        config_path(tmp_path / "missing.yaml")


def test_train_takes_a_preset_by_name(tmp_path: Path) -> None:
    import numpy as np

    from deeprec.data.dataset import PreparedDataset
    from deeprec.recommend.honesty import low_rank_ratings

    frame = low_rank_ratings(80, 40, density=0.3, seed=1)
    part = np.random.default_rng(0).random(len(frame))
    data = tmp_path / "data"
    PreparedDataset.from_tables(
        frame[part < 0.8], frame[(part >= 0.8) & (part < 0.9)], frame[part >= 0.9]
    ).save(data)
    env = dict(os.environ)
    env["PYTHONPATH"] = f"{SRC}{os.pathsep}{env.get('PYTHONPATH', '')}"
    proc = subprocess.run(
        [sys.executable, "-m", "deeprec", "train", "--data", str(data), "--config", "ml-100k",
         "--set", "epochs=1", "-o", str(tmp_path / "run"), "-q"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    saved = (tmp_path / "run" / "config.yaml").read_text()
    preset = config_path("ml-100k").read_text()
    # the run's config is the preset's (bar epochs)
    got, want = yaml.safe_load(saved), yaml.safe_load(preset)
    assert got["hidden"] == want["hidden"] and got["orientation"] == want["orientation"]
    assert json.loads(proc.stdout[proc.stdout.index("{") :])["epochs_run"] == 1
