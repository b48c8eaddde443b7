"""Ranking metrics on held-out ratings: precision@k, recall@k, NDCG@k, MAP@k.

Definitions follow Apache Spark MLlib's ``RankingMetrics`` (precisionAt, recallAt, ndcgAt,
meanAveragePrecisionAt), which Microsoft Recommenders' python_evaluation also matches:

- relevant items of a user: held-out items rated >= ``threshold`` (binary relevance);
- precision@k = hits in the top k / k (always k, even if fewer items were recommended);
- recall@k = hits in the top k / number of relevant items;
- NDCG@k = sum over hits at rank r (1-based) of 1/log2(r + 1), divided by the same sum for
  an ideal list with min(k, #relevant) hits;
- MAP@k = sum over hits at rank r of precision@r, divided by min(k, #relevant);
- every metric is the mean over users with at least one relevant held-out item (a user with
  no recommendations counts as 0).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from deeprec.errors import DataError

if TYPE_CHECKING:  # pragma: no cover
    from deeprec.base import Recommender
    from deeprec.data.dataset import PreparedDataset

METRICS = ("precision", "recall", "ndcg", "map")


def user_metrics(ranked: Sequence[Any], relevant: set[Any], k: int) -> dict[str, float]:
    """All four metrics of one user's ranked list against their relevant set."""
    if k <= 0:
        raise DataError(f"k must be positive, got {k}")
    if not relevant:
        raise DataError("a user without relevant items has no recall; leave them out")
    hits = np.array([item in relevant for item in list(ranked)[:k]], dtype=np.float64)
    ranks = np.arange(1, hits.shape[0] + 1)
    n_rel = len(relevant)
    n_hits = float(hits.sum())
    ideal = np.sum(1.0 / np.log2(np.arange(1, min(k, n_rel) + 1) + 1))
    return {
        "precision": n_hits / k,
        "recall": n_hits / n_rel,
        "ndcg": float(np.sum(hits / np.log2(ranks + 1)) / ideal),
        "map": float(np.sum(hits * np.cumsum(hits) / ranks) / min(k, n_rel)),
    }


def ranking_metrics(
    recommended: Mapping[Any, Sequence[Any]], relevant: Mapping[Any, set[Any]], k: int
) -> dict[str, float | int]:
    """Mean metrics over the users in `relevant` (those with >= 1 relevant item)."""
    users = [u for u, items in relevant.items() if items]
    if not users:
        raise DataError("no user has a relevant held-out item; lower the threshold")
    totals = dict.fromkeys(METRICS, 0.0)
    for user in users:
        for name, value in user_metrics(recommended.get(user, []), relevant[user], k).items():
            totals[name] += value
    out: dict[str, float | int] = {f"{name}@{k}": totals[name] / len(users) for name in METRICS}
    out["n_users"] = len(users)
    return out


def evaluate_ranking(
    model: Recommender,
    dataset: PreparedDataset,
    split: str = "test",
    *,
    k: int = 10,
    threshold: float = 4.0,
    exclude_rated: bool = True,
    chunk_size: int = 512,
) -> dict[str, float | int]:
    """Rank all items for each user with a relevant held-out rating; score the top k.

    Candidates are every item the user did not rate in training (``exclude_rated``).
    """
    from deeprec.recommend.topn import iter_top_n

    part = dataset.split(split)
    keep = part.ratings >= threshold
    relevant: dict[int, set[int]] = {}
    for user, item in zip(part.users[keep].tolist(), part.items[keep].tolist(), strict=True):
        relevant.setdefault(user, set()).add(item)
    if not relevant:
        raise DataError(f"no rating >= {threshold} in split {split!r}")
    users = np.array(sorted(relevant), dtype=np.int64)
    recommended: dict[int, list[int]] = {}
    for rows, _ranks, items, _scores in iter_top_n(
        model, users, k, exclude_rated=exclude_rated, chunk_size=chunk_size
    ):
        for user, item in zip(rows.tolist(), items.tolist(), strict=True):
            recommended.setdefault(user, []).append(item)
    result = ranking_metrics(recommended, relevant, k)
    result["threshold"] = threshold
    return result
