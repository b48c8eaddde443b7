"""Titles in the HTTP answers, GET /items, GET /similar, the page's files, item-based models."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from fastapi.testclient import TestClient

from deeprec import DeepRec
from deeprec.data.dataset import PreparedDataset
from deeprec.recommend.honesty import low_rank_ratings
from deeprec.serve.app import create_app


def titled_dataset(n_users: int = 80, n_items: int = 40) -> PreparedDataset:
    frame = low_rank_ratings(n_users, n_items, density=0.35, seed=7)
    dataset = PreparedDataset.from_tables(frame)
    ids = dataset.item_ids
    dataset.items = pl.DataFrame(
        {
            "item": ids,
            "title": [f"Film {i} {'Star' if i % 5 == 0 else 'Moon'}" for i in ids.tolist()],
            "genres": ["Drama|War" if i % 2 else None for i in ids.tolist()],
        }
    )
    return dataset


@pytest.fixture(scope="module")
def titled_model() -> DeepRec:
    return DeepRec(hidden=[16], epochs=3, batch_size=16, seed=0).fit(titled_dataset())


@pytest.fixture(scope="module")
def client(titled_model):
    with TestClient(create_app(titled_model)) as c:
        yield c


def test_items_search(client, titled_model):
    found = client.get("/items", params={"q": "STAR", "limit": 50}).json()
    assert found["query"] == "STAR"
    assert {row["item"] for row in found["items"]} == {
        i for i in titled_model.item_ids_.tolist() if i % 5 == 0
    }
    counts = [row["n_ratings"] for row in found["items"]]
    assert counts == sorted(counts, reverse=True)
    assert all(set(row) == {"item", "title", "genres", "n_ratings"} for row in found["items"])
    assert len(client.get("/items", params={"limit": 3}).json()["items"]) == 3  # most rated
    assert client.get("/items", params={"q": "nothing like this"}).json()["items"] == []
    assert client.get("/items", params={"limit": 0}).status_code == 422


def test_titles_in_recommend_predict_similar(client, titled_model):
    ids = titled_model.item_ids_.tolist()
    body = {"ratings": {str(ids[0]): 5.0, str(ids[1]): 1.0}, "k": 5}
    recs = client.post("/recommend", json=body).json()["items"]
    assert len(recs) == 5
    assert all(r["title"] == titled_model.item_titles([r["item"]])[0] for r in recs)
    known = client.post("/recommend", json={"user": int(titled_model.user_ids_[0]), "k": 2})
    assert all(r["title"].startswith("Film") for r in known.json()["items"])
    preds = client.post("/predict", json={"ratings": {str(ids[0]): 4}, "items": [ids[2], -5]})
    rows = preds.json()["predictions"]
    assert rows[0]["title"] == titled_model.item_titles([ids[2]])[0] and rows[1]["title"] is None
    similar = client.get("/similar", params={"item": ids[3], "k": 4}).json()
    assert similar["item"] == ids[3] and similar["title"] == f"Film {ids[3]} Moon"
    expected = titled_model.similar_items(ids[3], 4)
    assert [r["item"] for r in similar["items"]] == expected["item"].tolist()
    assert np.allclose([r["similarity"] for r in similar["items"]], expected["similarity"])
    assert client.get("/similar", params={"item": 10**9}).status_code == 404
    assert client.get("/similar", params={"item": "abc"}).status_code == 404


def test_model_info_and_page_files(client):
    info = client.get("/model").json()
    assert info["new_users"] is True and info["has_titles"] is True
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'src="/static/page.js"' in page.text and "http" not in page.text.split("<body>")[0]
    for name, kind in (("page.js", "text/javascript"), ("page.css", "text/css")):
        got = client.get(f"/static/{name}")
        assert got.status_code == 200 and got.headers["content-type"].startswith(kind)
        assert "https://" not in got.text and "http://" not in got.text  # nothing fetched
    assert client.get("/static/app.py").status_code == 404
    assert client.get("/static/..%2Fapp.py").status_code == 404


def test_item_based_model_says_it_cannot_fold_in():
    model = DeepRec(hidden=[8], epochs=1, orientation="item", seed=0).fit(titled_dataset())
    with TestClient(create_app(model)) as c:
        info = c.get("/model").json()
        assert info["new_users"] is False and info["orientation"] == "item"
        answer = c.post("/recommend", json={"ratings": {str(model.item_ids_[0]): 4}})
        assert answer.status_code == 422 and "new users" in answer.json()["detail"]
        assert c.get("/items", params={"q": "film"}).json()["items"]  # search still works
        assert c.get("/similar", params={"item": int(model.item_ids_[0])}).status_code == 200


def test_model_without_titles_searches_ids():
    frame = low_rank_ratings(40, 20, density=0.4, seed=1)
    model = DeepRec(hidden=[8], epochs=1, seed=0).fit(frame)
    with TestClient(create_app(model)) as c:
        assert c.get("/model").json()["has_titles"] is False
        wanted = str(model.item_ids_[0])
        rows = c.get("/items", params={"q": wanted}).json()["items"]
        assert int(wanted) in [r["item"] for r in rows] and rows[0]["title"] is None
        recs = c.post("/recommend", json={"ratings": {wanted: 5}, "k": 2}).json()["items"]
        assert all(r["title"] is None for r in recs)
