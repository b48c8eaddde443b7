"""Top-N and fold-in through the Python API: exclusions, files, input checks, item-based."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from deeprec import DeepRec
from deeprec.errors import DataError, UnknownIdError

from .conftest import rated_items


def test_recommend_known_user_is_the_best_unrated(fitted):
    user = fitted.user_ids_[7]
    top = fitted.recommend(user, k=12)
    assert list(top.columns) == ["item", "score", "prediction"] and len(top) == 12
    assert not set(top["item"].tolist()) & rated_items(fitted, user)
    scores = fitted._score_users(np.array([7]))[0]
    unrated = [
        i for i in range(fitted.n_items) if fitted.item_ids_[i] not in rated_items(fitted, user)
    ]
    best = sorted(unrated, key=lambda i: -scores[i])[:12]
    assert top["item"].tolist() == fitted.item_ids_[best].tolist()
    with_rated = fitted.recommend(user, k=fitted.n_items, exclude_rated=False)
    assert len(with_rated) == fitted.n_items


def test_recommend_unknown_user_and_bad_k(fitted):
    with pytest.raises(UnknownIdError, match="unknown user"):
        fitted.recommend(-5)
    for k in (0, -1, 2.5, True):
        with pytest.raises(DataError, match="k must be"):
            fitted.recommend(fitted.user_ids_[0], k=k)


def test_fold_in_of_a_known_users_vector_reproduces_their_scores(fitted):
    u = 11
    lo, hi = fitted.train_.indptr[u], fitted.train_.indptr[u + 1]
    ratings = dict(
        zip(
            fitted.item_ids_[fitted.train_.indices[lo:hi]].tolist(),
            fitted.train_.values[lo:hi].tolist(),
            strict=True,
        )
    )
    result = fitted.predict_for(ratings, fitted.item_ids_.tolist(), clip=False)
    np.testing.assert_allclose(
        result.frame["prediction"], fitted._score_users(np.array([u]))[0], atol=1e-5
    )
    recs = fitted.recommend_for(ratings, k=10)
    assert recs.frame["item"].tolist() == fitted.recommend(fitted.user_ids_[u], 10)["item"].tolist()


def test_new_user_input_checks(fitted):
    item = int(fitted.item_ids_[0])
    cases = [
        ({}, "empty"),
        ({item: 9.0}, "outside the model's scale"),
        ({item: float("nan")}, "not finite"),
        ({item: "4"}, "not a number"),
        ({item: True}, "not a number"),
        ({-77: 3.0}, "none of the 1 rated items"),
        ({item: 3.0, str(item): 4.0}, "rated twice"),
    ]
    for ratings, message in cases:
        with pytest.raises(DataError, match=message):
            fitted.predict_for(ratings, [item])
        with pytest.raises(DataError, match=message):
            fitted.recommend_for(ratings, 5)
    with pytest.raises(DataError, match="mapping"):
        fitted.recommend_for([(item, 3.0)], 5)


def test_unknown_ids_are_reported_not_dropped(fitted):
    items = fitted.item_ids_[:3].tolist()
    ratings = {items[0]: 4.0, items[1]: 2.0, "x": 3.0, 10**9: 5.0}
    result = fitted.predict_for(ratings, [items[2], "y"])
    assert result.unknown_rated == ["x", 10**9] and result.n_used == 2
    assert result.unknown_requested == ["y"]
    assert np.isnan(result.frame["prediction"].iloc[1])
    with pytest.raises(UnknownIdError, match="unknown to the model"):
        fitted.predict_for(ratings, [items[2]], on_unknown="raise")
    # string forms of integer ids (JSON keys) are the same items
    as_text = fitted.predict_for({str(k): v for k, v in list(ratings.items())[:2]}, [items[2]])
    np.testing.assert_allclose(as_text.frame["prediction"], result.frame["prediction"].iloc[:1])


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_top_n_file_matches_single_user_calls(fitted, tmp_path, suffix):
    out = tmp_path / f"top{suffix}"
    stats = fitted.recommend_all(out, k=5, chunk_size=7)  # many small chunks
    frame = pd.read_parquet(out) if suffix == ".parquet" else pd.read_csv(out)
    assert stats["rows"] == len(frame) == 5 * fitted.n_users
    assert list(frame.columns) == ["user", "rank", "item", "score", "prediction"]
    for user in fitted.user_ids_[[0, 50, 239]]:
        rows = frame[frame["user"] == user].sort_values("rank")
        expected = fitted.recommend(user, 5)
        assert rows["item"].tolist() == expected["item"].tolist()
        np.testing.assert_allclose(rows["score"], expected["score"], rtol=1e-6)
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]  # no temp files left


def test_top_n_for_listed_users_and_errors(fitted, tmp_path):
    users = fitted.user_ids_[[3, 4]].tolist()
    out = tmp_path / "some.csv"
    fitted.recommend_all(out, users=users, k=3)
    assert sorted(set(pd.read_csv(out)["user"])) == sorted(users)
    with pytest.raises(UnknownIdError):
        fitted.recommend_all(tmp_path / "x.csv", users=[users[0], -1])
    with pytest.raises(DataError, match="format"):
        fitted.recommend_all(tmp_path / "x.txt")
    assert not (tmp_path / "x.csv").exists()


def test_item_based_model_folds_in_new_items(ratings_frame):
    # uncentred, so that rows_ holds raw ratings (test_center.py checks the centred fold-in)
    model = DeepRec(
        hidden=[16], epochs=2, orientation="item", batch_size=16, center="none", standardize=False
    ).fit(ratings_frame)
    item = 5
    lo, hi = model.rows_.indptr[item], model.rows_.indptr[item + 1]
    ratings = dict(
        zip(
            model.user_ids_[model.rows_.indices[lo:hi]].tolist(),
            model.rows_.values[lo:hi].tolist(),
            strict=True,
        )
    )
    users = model.user_ids_[:20].tolist()
    result = model.predict_for_item(ratings, users)
    expected = model.predict(users, [model.item_ids_[item]] * 20)
    np.testing.assert_allclose(result.frame["prediction"], expected, atol=1e-5)
    with pytest.raises(DataError, match="item-based model cannot fold in new users"):
        model.predict_for({int(model.item_ids_[0]): 3.0}, [model.item_ids_[1]])


def test_user_based_model_refuses_new_items(fitted):
    with pytest.raises(DataError, match="user-based model cannot fold in new items"):
        fitted.predict_for_item({int(fitted.user_ids_[0]): 3.0}, [fitted.user_ids_[1]])


def test_top_items_are_ranked_and_reported_by_unclipped_scores(fitted, tmp_path, monkeypatch):
    """Scores above the scale no longer all read 5.0: `score` is the unclipped ranking
    score (strictly decreasing here), `prediction` the clipped rating."""
    high = fitted.rating_range_[1]
    raw = high + 1.0 - np.linspace(0.0, 2.0, fitted.n_items)  # top items above the scale

    def fake_scores(users):
        return np.tile(raw, (len(users), 1))

    monkeypatch.setattr(fitted, "_score_users", fake_scores)
    user = fitted.user_ids_[3]
    top = fitted.recommend(user, k=8, exclude_rated=False)
    np.testing.assert_allclose(top["score"], raw[:8])
    assert (np.diff(top["score"]) < 0).all() and top["score"].iloc[0] > high
    np.testing.assert_allclose(top["prediction"], np.minimum(raw[:8], high))
    out = tmp_path / "top.csv"
    fitted.recommend_all(out, users=[user], k=8, exclude_rated=False)
    frame = pd.read_csv(out)
    np.testing.assert_allclose(frame["score"], raw[:8], rtol=1e-6)
    np.testing.assert_allclose(frame["prediction"], np.minimum(raw[:8], high), rtol=1e-6)


def test_new_user_top_items_report_unclipped_scores(fitted):
    ratings = {fitted.item_ids_[i].item(): 5.0 for i in range(10)}
    result = fitted.recommend_for(ratings, k=10)
    low, high = fitted.rating_range_
    frame = result.frame
    assert list(frame.columns) == ["item", "score", "prediction"]
    assert (np.diff(frame["score"]) <= 0).all()
    np.testing.assert_allclose(frame["prediction"], np.clip(frame["score"], low, high))
    want = fitted.predict_for(ratings, frame["item"].tolist(), clip=False).frame["prediction"]
    np.testing.assert_allclose(frame["score"], want, atol=1e-6)
