"""Predictions and top-N lists for known users, new users (fold-in) and new items.

The public entry points are methods of `deeprec.base.Recommender` (``recommend``,
``recommend_for``, ``predict_for``, ``predict_for_item``, ``recommend_all``); this package
holds their implementation plus ranking metrics and model export.
"""

from __future__ import annotations

from deeprec.recommend.foldin import (
    FoldInResult,
    predict_for,
    predict_for_item,
    recommend_for,
)
from deeprec.recommend.topn import iter_top_n, recommend_user, top_k, write_top_n

__all__ = [
    "FoldInResult",
    "iter_top_n",
    "predict_for",
    "predict_for_item",
    "recommend_for",
    "recommend_user",
    "top_k",
    "write_top_n",
]
