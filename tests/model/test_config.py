"""TrainConfig: unknown options and wrong types are ConfigErrors; every preset is valid."""

from __future__ import annotations

from pathlib import Path

import pytest

from deeprec.errors import ConfigError
from deeprec.train.config import TrainConfig
from deeprec.train.trainer import build_model

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_unknown_option_is_named() -> None:
    with pytest.raises(ConfigError, match=r"unknown option.*hiden"):
        TrainConfig.from_dict({"hiden": [8]})
    with pytest.raises(ConfigError, match="--set learning_rate: unknown option"):
        TrainConfig().with_overrides(["learning_rate=0.1"])
    with pytest.raises(ConfigError, match="key=value"):
        TrainConfig().with_overrides(["epochs"])


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"hidden": []}, "hidden"),
        ({"hidden": "512"}, "hidden"),
        ({"hidden": [512, 0]}, "hidden"),
        ({"hidden": [512, 1.5]}, "hidden"),
        ({"hidden": [True]}, "hidden"),
        ({"activation": "gelu"}, "activation"),
        ({"last_activation": 3}, "last_activation"),
        ({"dropout": 1.0}, "dropout"),
        ({"dropout": "high"}, "dropout"),
        ({"input_dropout": -0.1}, "input_dropout"),
        ({"lr": 0}, "lr"),
        ({"lr": "0.1"}, "lr"),
        ({"momentum": -1}, "momentum"),
        ({"epochs": 0}, "epochs"),
        ({"epochs": 2.5}, "epochs"),
        ({"batch_size": True}, "batch_size"),
        ({"refeed_steps": -1}, "refeed_steps"),
        ({"optimizer": "lbfgs"}, "optimizer"),
        ({"orientation": "both"}, "orientation"),
        ({"constrained": "yes"}, "constrained"),
        ({"lr_schedule": "cosine"}, "lr_schedule"),
        ({"lr_milestones": ["x"]}, "lr_milestones"),
        ({"dropout_placement": "input"}, "dropout_placement"),
        ({"input_row_scale": -1.0}, "input_row_scale"),
        ({"input_row_scale": "10"}, "input_row_scale"),
        ({"input_row_scale": float("inf")}, "input_row_scale"),
        ({"input_row_scale": 10.0, "refeed_steps": 1}, "input_row_scale"),
        ({"rated_indicator": "yes"}, "rated_indicator"),
        ({"rated_indicator": True}, "rated_indicator"),  # compute: fast (the default)
    ],
)
def test_bad_values_raise_config_error_naming_the_field(values: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        TrainConfig.from_dict(values, source="test.yaml")


def test_set_values_are_parsed_as_yaml() -> None:
    cfg = TrainConfig().with_overrides(["hidden=[64, 32]", "lr=0.01", "constrained=true"])
    assert cfg.hidden == [64, 32] and cfg.lr == 0.01 and cfg.constrained is True
    with pytest.raises(ConfigError, match="epochs must be an integer"):
        TrainConfig().with_overrides(["epochs=many"])


def test_exponent_notation_is_a_number_in_set_and_yaml(tmp_path) -> None:
    """YAML 1.1 (PyYAML) reads 1e-3 without a dot as a string; numbers take it anyway."""
    cfg = TrainConfig().with_overrides(["lr=1e-3", "checkpoint_every_minutes=5E-1"])
    assert cfg.lr == 0.001 and cfg.checkpoint_every_minutes == 0.5
    path = tmp_path / "c.yaml"
    path.write_text("lr: 2e-4\nweight_decay: 1e-5\n")
    assert TrainConfig.from_yaml(path).lr == 0.0002
    assert TrainConfig.from_yaml(path).weight_decay == 0.00001
    with pytest.raises(ConfigError, match="lr must be a number"):
        TrainConfig().with_overrides(["lr='1e-3'"])  # quoted: a string, as before


def test_yaml_round_trip(tmp_path) -> None:
    cfg = TrainConfig(hidden=[32, 16], orientation="item", epochs=7)
    path = tmp_path / "c.yaml"
    path.write_text(cfg.to_yaml())
    assert TrainConfig.from_yaml(path) == cfg


def test_bad_yaml_files(tmp_path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        TrainConfig.from_yaml(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        TrainConfig.from_yaml(tmp_path / "list.yaml")
    (tmp_path / "broken.yaml").write_text("hidden: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        TrainConfig.from_yaml(tmp_path / "broken.yaml")


PRESETS = sorted(p for p in CONFIGS.glob("*.yaml") if not p.name.endswith("-ensemble.yaml"))
ENSEMBLES = sorted(CONFIGS.glob("*-ensemble.yaml"))


def test_the_expected_presets_exist() -> None:
    names = {p.name for p in PRESETS}
    expected = {
        "netflix-full.yaml", "netflix-3m.yaml", "netflix-6m.yaml", "netflix-1y.yaml",
        "ml-100k.yaml", "ml-1m.yaml", "quickstart.yaml",
    }  # fmt: skip
    assert expected <= names


@pytest.mark.parametrize("path", PRESETS, ids=[p.name for p in PRESETS])
def test_every_preset_loads_validates_and_builds(path: Path) -> None:
    cfg = TrainConfig.from_yaml(path)
    model = build_model(cfg, 50, n_rows=40)  # n_rows: global_kernel's pooling matrix
    assert model.hidden == cfg.hidden
    # every key a preset sets is spelled out (no silent defaults for the architecture)
    text = path.read_text()
    for key in ("hidden", "activation", "dropout", "optimizer", "lr", "batch_size", "epochs"):
        assert f"\n{key}:" in f"\n{text}", f"{path.name} does not set {key}"


@pytest.mark.parametrize("path", ENSEMBLES, ids=[p.name for p in ENSEMBLES])
def test_every_ensemble_preset_expands_to_valid_members(path: Path) -> None:
    from deeprec.ensemble import Ensemble, read_ensemble_yaml

    groups = Ensemble(**read_ensemble_yaml(path)).member_groups()
    assert len(groups) >= 2 and all(groups)
    for group in groups:
        assert len({c.seed for c in group}) == len(group)  # seeds differ within a group
        build_model(group[0], 50)


@pytest.mark.parametrize(
    ("name", "hidden", "dropout"),
    [
        ("netflix-full", [512, 512, 1024], 0.8),
        ("netflix-3m", [128, 256, 256], 0.65),
        ("netflix-6m", [256, 256, 512], 0.8),
        ("netflix-1y", [256, 256, 512], 0.8),
    ],
)
def test_netflix_presets_follow_table_4(name: str, hidden: list[int], dropout: float) -> None:
    cfg = TrainConfig.from_yaml(CONFIGS / f"{name}.yaml")
    assert (cfg.hidden, cfg.dropout) == (hidden, dropout)
    assert (cfg.optimizer, cfg.momentum, cfg.lr, cfg.batch_size) == ("sgd", 0.9, 0.005, 128)
    assert (cfg.refeed_steps, cfg.activation, cfg.lr_schedule) == (1, "selu", "multistep")
