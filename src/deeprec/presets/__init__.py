"""Training presets shipped inside the package (so they exist when deeprec is installed).

The repository's ``configs/`` folder holds the same files for reading and editing; a test
checks that the copies agree.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from deeprec.errors import ConfigError
from deeprec.train.config import TrainConfig, load_yaml


def preset_names() -> list[str]:
    return sorted(
        p.name.removesuffix(".yaml")
        for p in resources.files(__name__).iterdir()
        if p.name.endswith(".yaml")
    )


def preset_text(name: str) -> str:
    resource = resources.files(__name__) / f"{name}.yaml"
    if not resource.is_file():
        raise ConfigError(f"unknown preset {name!r}; known presets: {', '.join(preset_names())}")
    return resource.read_text()


def is_ensemble_preset(name: str) -> bool:
    """True for presets with a top-level ``ensemble:`` key (deeprec.ensemble)."""
    values = load_yaml(preset_text(name)) or {}
    return isinstance(values, dict) and "ensemble" in values


def load_preset(name: str) -> TrainConfig:
    """The named single-model preset as a validated TrainConfig."""
    with resources.as_file(resources.files(__name__) / f"{name}.yaml") as path:
        if not Path(path).is_file():
            raise ConfigError(
                f"unknown preset {name!r}; known presets: {', '.join(preset_names())}"
            )
        if is_ensemble_preset(name):
            raise ConfigError(
                f"preset {name!r} is an ensemble; load it with "
                "deeprec.ensemble.load_ensemble_preset"
            )
        return TrainConfig.from_yaml(path)


def config_path(value: str | Path) -> Path:
    """What ``--config`` names: an existing YAML file, else a preset shipped in the package
    (``--config ml-100k``; ``ml-100k.yaml`` too). Neither is a ConfigError listing both."""
    path = Path(value)
    if path.is_file():
        require_text(path, "--config")
        return path
    name = path.name.removesuffix(".yaml").removesuffix(".yml")
    if path.parent == Path(".") and name in preset_names():
        # presets are plain files inside the installed package (setuptools package-data)
        return Path(str(resources.files(__name__) / f"{name}.yaml"))
    raise ConfigError(
        f"--config {value}: no such file, and not a preset shipped with deeprec "
        f"(presets: {', '.join(preset_names())})"
    )


def require_text(path: str | Path, what: str) -> None:
    """A ConfigError naming `path` when it is not UTF-8 text (a binary file given where a
    YAML file is due), instead of a UnicodeDecodeError traceback or garbage bytes."""
    data = Path(path).read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{what} {path}: not a YAML text file (byte {exc.start} is not UTF-8; binary?)"
        ) from None
    if b"\x00" in data:
        raise ConfigError(f"{what} {path}: not a YAML text file (it holds NUL bytes; binary?)")
