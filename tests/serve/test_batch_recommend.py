"""Batch recommend for many users, the items= candidate filter, and similar_items."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from deeprec import DeepRec
from deeprec.baselines import BiasedMF, BiasOnly
from deeprec.errors import UnknownIdError

from .conftest import rated_items


def test_batch_recommend_equals_single_user_calls(fitted):
    users = fitted.user_ids_[[0, 5, 17, 200]]
    frame = fitted.recommend(users, k=6)
    assert list(frame.columns) == ["user", "rank", "item", "score", "prediction"]
    assert len(frame) == 4 * 6
    for user in users:
        rows = frame[frame.user == user].sort_values("rank")
        single = fitted.recommend(user, k=6)
        assert rows["item"].tolist() == single["item"].tolist()
        np.testing.assert_allclose(rows["score"], single["score"])
        assert rows["rank"].tolist() == list(range(1, 7))
        assert not set(rows["item"]) & rated_items(fitted, user)
    # a pandas Series and a list work the same
    same = fitted.recommend(pd.Series(users), k=6)
    pd.testing.assert_frame_equal(same, frame)


def test_batch_recommend_exclude_seen_and_candidates(fitted):
    user = fitted.user_ids_[3]
    seen = rated_items(fitted, user)
    with_seen = fitted.recommend([user], k=fitted.n_items, exclude_seen=False)
    assert len(with_seen) == fitted.n_items and seen <= set(with_seen["item"])
    candidates = [*fitted.item_ids_[:20].tolist(), 999_999]  # one unknown id: ignored
    top = fitted.recommend([user], k=50, items=candidates)
    allowed = set(candidates) - seen - {999_999}
    assert set(top["item"]) == allowed and len(top) == len(allowed)
    assert (np.diff(top["score"]) <= 0).all()
    # the same filter for one user
    single = fitted.recommend(user, k=3, items=candidates)
    assert single["item"].tolist() == top["item"].tolist()[:3]
    with pytest.raises(UnknownIdError, match="none of the candidate"):
        fitted.recommend([user], items=[999_999])


def test_batch_recommend_unknown_users(fitted):
    users = [fitted.user_ids_[0], 123_456_789]
    with pytest.raises(UnknownIdError, match="1 unknown user"):
        fitted.recommend(users, k=3)
    frame = fitted.recommend(users, k=3, on_unknown="skip")
    assert set(frame["user"]) == {fitted.user_ids_[0]}


def test_similar_items_user_based_uses_output_layer_rows(fitted):
    item = fitted.item_ids_[4]
    similar = fitted.similar_items(item, k=5)
    assert list(similar.columns) == ["item", "similarity"] and len(similar) == 5
    assert item not in set(similar["item"])
    weights = fitted.module_.output_layer()[0].detach().double().numpy()
    unit = weights / np.linalg.norm(weights, axis=1, keepdims=True)
    expected = np.delete(unit @ unit[4], 4)
    assert similar["similarity"].iloc[0] == pytest.approx(expected.max())
    assert (np.diff(similar["similarity"]) <= 0).all()


def test_similar_items_item_based_and_baselines(ratings_frame):
    model = DeepRec(hidden=[8], epochs=2, orientation="item", seed=1).fit(ratings_frame)
    item = model.item_ids_[0]
    similar = model.similar_items(item, k=4)
    assert len(similar) == 4 and item not in set(similar["item"])
    assert similar["similarity"].between(-1.0001, 1.0001).all()
    mf = BiasedMF(n_factors=4, epochs=2).fit(ratings_frame)
    assert len(mf.similar_items(item, k=3)) == 3
    with pytest.raises(NotImplementedError):
        BiasOnly().fit(ratings_frame).similar_items(item)
    with pytest.raises(UnknownIdError):
        model.similar_items("no such item")


def test_batch_recommend_over_http_equals_the_python_api(fitted):
    """POST /recommend/batch: many known users in one request, an `items` candidate
    filter, unknown users listed rather than failing the request."""
    from fastapi.testclient import TestClient

    from deeprec.serve import create_app

    users = [int(u) for u in fitted.user_ids_[[0, 5, 17]]]
    candidates = [int(i) for i in fitted.item_ids_[:30]]
    with TestClient(create_app(fitted, batching=False)) as client:
        reply = client.post(
            "/recommend/batch",
            json={"users": [*users, -42], "k": 5, "items": candidates},
        )
        assert reply.status_code == 200, reply.text
        body = reply.json()
        too_many = client.post("/recommend/batch", json={"users": list(range(1_001))})
    assert too_many.status_code == 422
    assert body["unknown_users"] == [-42]
    assert [r["user"] for r in body["results"]] == users
    expected = fitted.recommend(users, k=5, items=candidates)
    for result in body["results"]:
        rows = expected[expected.user == result["user"]].sort_values("rank")
        assert [i["item"] for i in result["items"]] == rows["item"].tolist()
        np.testing.assert_allclose([i["score"] for i in result["items"]], rows["score"])
        assert set(i["item"] for i in result["items"]) <= set(candidates)
        assert not set(i["item"] for i in result["items"]) & rated_items(fitted, result["user"])
