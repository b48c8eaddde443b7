"""Ensemble configuration without models: the ``ensemble:`` YAML form and member specs
expanded into one TrainConfig per model (deeprec.ensemble fits them; deeprec.teacher
distils from them)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from deeprec.errors import ConfigError
from deeprec.train.config import TrainConfig, read_yaml

BLENDS = ("lsq", "mean")
MEMBER_EXTRA_KEYS = ("preset", "seeds")


def check_blend(blend: str) -> None:
    if blend not in BLENDS:
        raise ConfigError(f"blend must be one of {', '.join(BLENDS)}, got {blend!r}")


def expand_members(
    members: list[dict[str, Any]] | tuple[dict[str, Any], ...], overrides: list[str] | None = None
) -> list[TrainConfig]:
    """One validated TrainConfig per model (each member's ``seeds`` expanded in order);
    `overrides` (``key=value`` strings, as ``--set``) apply to every member."""
    return [config for group in member_groups(members, overrides) for config in group]


def member_groups(
    members: list[dict[str, Any]] | tuple[dict[str, Any], ...], overrides: list[str] | None = None
) -> list[list[TrainConfig]]:
    """Per member spec, its list of TrainConfigs (one per seed; one when no ``seeds``).
    Members never refit on train + validation (a preset's ``refit: true`` is turned off):
    the blend is fitted on their validation predictions, which must come from weights that
    did not train on those ratings."""
    from deeprec.presets import load_preset

    if not isinstance(members, (list, tuple)) or not members:
        raise ConfigError("ensemble members must be a non-empty list of mappings")
    groups: list[list[TrainConfig]] = []
    for k, spec in enumerate(members):
        if not isinstance(spec, dict):
            raise ConfigError(f"ensemble member {k} must be a mapping, got {type(spec).__name__}")
        spec = dict(spec)
        preset = spec.pop("preset", None)
        seeds = spec.pop("seeds", None)
        base = load_preset(preset) if preset is not None else TrainConfig()
        values = {**base.to_dict(), "refit": False, **spec}
        config = TrainConfig.from_dict(values, source=f"ensemble member {k}")
        config = config.with_overrides(list(overrides or []))
        if config.refit:
            raise ConfigError(
                f"ensemble member {k}: refit cannot be used in an ensemble (the blend is "
                "fitted on the members' validation predictions)"
            )
        if seeds is None:
            groups.append([config])
            continue
        if not isinstance(seeds, list) or not seeds:
            raise ConfigError(f"ensemble member {k}: seeds must be a non-empty list of integers")
        groups.append([config.with_overrides([f"seed={seed}"]) for seed in seeds])
    return groups


def read_ensemble_yaml(path: str | Path) -> dict[str, Any]:
    """``Ensemble`` keyword arguments from a YAML file with a top-level ``ensemble:`` key."""
    values = read_yaml(path)
    if set(values) != {"ensemble"} or not isinstance(values["ensemble"], dict):
        raise ConfigError(f"{path}: an ensemble config has exactly one top-level key, ensemble")
    spec = dict(values["ensemble"])
    unknown = sorted(set(spec) - {"members", "blend"})
    if unknown:
        raise ConfigError(f"{path}: unknown ensemble option(s) {', '.join(unknown)}")
    if "members" not in spec:
        raise ConfigError(f"{path}: ensemble.members is missing")
    kwargs = {"members": spec["members"], "blend": spec.get("blend", "lsq")}
    try:
        check_blend(kwargs["blend"])
        member_groups(copy.deepcopy(list(kwargs["members"])))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return kwargs


def load_ensemble_preset(name: str) -> dict[str, Any]:
    """``Ensemble`` keyword arguments of a packaged ensemble preset (e.g. ml-100k-ensemble)."""
    from importlib import resources

    from deeprec.presets import preset_text

    preset_text(name)  # unknown names: ConfigError listing the presets
    with resources.as_file(resources.files("deeprec.presets") / f"{name}.yaml") as path:
        return read_ensemble_yaml(path)


def is_ensemble_yaml(path: str | Path) -> bool:
    values = read_yaml(path)
    return "ensemble" in values
