"""Ranking metrics on hand-made cases (Spark MLlib RankingMetrics definitions)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from deeprec.base import Recommender
from deeprec.data.dataset import PreparedDataset
from deeprec.errors import DataError
from deeprec.recommend.metrics import evaluate_ranking, ranking_metrics, user_metrics


def test_one_user_by_hand():
    # relevant {a, c, x}; ranked a b c d: hits at ranks 1 and 3; x never recommended
    m = user_metrics(["a", "b", "c", "d"], {"a", "c", "x"}, k=4)
    assert m["precision"] == pytest.approx(2 / 4)
    assert m["recall"] == pytest.approx(2 / 3)
    dcg = 1 / math.log2(2) + 1 / math.log2(4)
    idcg = 1 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)
    assert m["ndcg"] == pytest.approx(dcg / idcg)
    assert m["map"] == pytest.approx((1 / 1 + 2 / 3) / 3)  # min(k=4, 3 relevant) = 3


def test_cutoff_below_number_of_relevant():
    # k=2 < 3 relevant: MAP and the ideal DCG use min(k, #relevant) = 2
    m = user_metrics(["b", "a", "c"], {"a", "c", "x"}, k=2)
    assert m["precision"] == pytest.approx(1 / 2)
    assert m["recall"] == pytest.approx(1 / 3)
    assert m["ndcg"] == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))
    assert m["map"] == pytest.approx((1 / 2) / 2)


def test_perfect_and_empty_lists():
    assert user_metrics(["a", "b"], {"a", "b"}, 2) == pytest.approx(
        {"precision": 1.0, "recall": 1.0, "ndcg": 1.0, "map": 1.0}
    )
    short = user_metrics(["a"], {"a"}, 5)  # precision divides by k, not by the list length
    assert short["precision"] == pytest.approx(1 / 5) and short["ndcg"] == 1.0
    assert user_metrics([], {"a"}, 3) == {"precision": 0.0, "recall": 0.0, "ndcg": 0.0, "map": 0.0}
    with pytest.raises(DataError):
        user_metrics(["a"], set(), 3)
    with pytest.raises(DataError):
        user_metrics(["a"], {"a"}, 0)


def test_spark_documentation_example():
    # The example in Spark's RankingMetrics docs, minus its third query (no relevant
    # items: Spark scores it 0, we leave such users out), so means are over 2 queries.
    pred = {1: [1, 6, 2, 7, 8, 3, 9, 10, 4, 5], 2: [4, 1, 5, 6, 2, 7, 3, 8, 9, 10]}
    rel = {1: {1, 2, 3, 4, 5}, 2: {1, 2, 3}}
    assert ranking_metrics(pred, rel, 1)["precision@1"] == pytest.approx(1 / 2)
    assert ranking_metrics(pred, rel, 5)["precision@5"] == pytest.approx((2 / 5 + 2 / 5) / 2)
    # Spark's 3-query values times 3/2: ndcgAt(3) = 0.33..., recallAt(5) = 0.35...
    assert ranking_metrics(pred, rel, 3)["ndcg@3"] * 2 / 3 == pytest.approx(1 / 3, abs=5e-3)
    assert ranking_metrics(pred, rel, 5)["recall@5"] * 2 / 3 == pytest.approx(0.3555, abs=1e-3)
    assert ranking_metrics(pred, rel, 2)["map@2"] * 2 / 3 == pytest.approx(0.25)


class FixedScores(Recommender):
    """A stub whose scores are a fixed matrix: evaluate_ranking's plumbing, checked by hand."""

    def __init__(self, scores=None):
        self.scores = scores

    def _score_users(self, users):
        return self.scores[np.asarray(users)]


def test_evaluate_ranking_excludes_training_items_and_uses_threshold():
    train = {"user": [0, 0, 1], "item": [0, 1, 2], "rating": [5.0, 1.0, 3.0]}
    test = {"user": [0, 0, 1, 1], "item": [2, 3, 0, 3], "rating": [4.0, 2.0, 5.0, 4.5]}
    dataset = PreparedDataset.from_tables(train, test=test, keep_unseen=True)
    model = FixedScores(np.array([[9, 8, 1, 7], [1, 2, 9, 3]], dtype=float))
    model._set_index(dataset)
    result = evaluate_ranking(model, dataset, "test", k=1, threshold=4.0)
    # user 0: training items 0,1 excluded -> top-1 is item 3 (2.0 stars: not relevant)
    # user 1: item 2 excluded -> top-1 is item 3 (relevant); relevant {0, 3}
    assert result["n_users"] == 2
    assert result["precision@1"] == pytest.approx((0 + 1) / 2)
    assert result["recall@1"] == pytest.approx((0 + 1 / 2) / 2)
    with pytest.raises(DataError, match="no rating >= 6"):
        evaluate_ranking(model, dataset, "test", k=1, threshold=6.0)
