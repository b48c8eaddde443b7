"""Fixtures of the model tests: small synthetic rating sets (generated, never real data)."""

from __future__ import annotations

import pandas as pd
import pytest

from deeprec.data.dataset import PreparedDataset

from .model_data import split_frame, synthetic_frame


@pytest.fixture
def frame() -> pd.DataFrame:
    return synthetic_frame()


@pytest.fixture
def dataset(frame: pd.DataFrame) -> PreparedDataset:
    return split_frame(frame)
