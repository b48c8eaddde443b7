"""deeprec: deep autoencoders for explicit-rating collaborative filtering.

Importing the package has no side effects; heavy modules (torch, polars) load only
when the names that need them are first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "DeepRec": "deeprec.estimator",
    "PreparedDataset": "deeprec.data.dataset",
    "DeepRecError": "deeprec.errors",
    "DataError": "deeprec.errors",
    "load_model": "deeprec.base",
}

if TYPE_CHECKING:  # pragma: no cover
    from deeprec.base import load_model
    from deeprec.data.dataset import PreparedDataset
    from deeprec.errors import DataError, DeepRecError
    from deeprec.estimator import DeepRec


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'deeprec' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = ["DataError", "DeepRec", "DeepRecError", "PreparedDataset", "__version__", "load_model"]
