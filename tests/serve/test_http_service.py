"""The real server over HTTP: every endpoint, every bad input, parity with the Python API."""

from __future__ import annotations

import math

import numpy as np
import pytest

from .conftest import rated_items


def some_ratings(model, n=6, offset=0):
    items = model.item_ids_[offset : offset + n].tolist()
    return {str(item): float(1 + (i % 5)) for i, item in enumerate(items)}


def test_health_and_openapi(server):
    health = server.get("/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    schema = server.get("/openapi.json").json()
    assert {"/health", "/model", "/predict", "/recommend"} <= set(schema["paths"])
    # the limits are part of the published schema
    assert "maximum" in str(schema["components"]["schemas"])


def test_model_metadata(server, fitted):
    info = server.get("/model").json()
    assert info["model"] == "DeepRec"
    assert info["n_items"] == fitted.n_items and info["n_users"] == fitted.n_users
    assert info["architecture"] == fitted.module_.architecture()
    assert info["dataset"]["path"] == "synthetic"
    assert info["metrics"]["best_epoch"] == 8
    assert info["rating_range"] == list(fitted.rating_range_)
    # httptools and uvloop are dependencies: the service must run on them, not the fallbacks.
    assert info["server"] == {"loop": "uvloop", "http": "httptools"}


def test_predict_known_user_matches_python(server, fitted):
    user = int(fitted.user_ids_[5])
    items = fitted.item_ids_[:7].tolist()
    body = server.post("/predict", json={"user": user, "items": items}).json()
    got = [p["prediction"] for p in body["predictions"]]
    np.testing.assert_allclose(got, fitted.predict([user] * 7, items), rtol=0, atol=1e-5)


def test_new_user_predictions_equal_predict_for(server, fitted):
    ratings = some_ratings(fitted, 8)
    items = fitted.item_ids_[10:30].tolist()
    body = server.post("/predict", json={"ratings": ratings, "items": items}).json()
    expected = fitted.predict_for({int(k): v for k, v in ratings.items()}, items)
    got = [p["prediction"] for p in body["predictions"]]
    np.testing.assert_allclose(got, expected.frame["prediction"], rtol=0, atol=1e-5)
    assert body["n_ratings_used"] == 8 and body["unknown_rated"] == []


def test_unknown_ids_are_reported(server, fitted):
    ratings = {**some_ratings(fitted, 4), "999999": 3.0, "not-an-id": 4.0}
    items = [int(fitted.item_ids_[0]), 123456789, "nope"]
    body = server.post("/predict", json={"ratings": ratings, "items": items}).json()
    assert sorted(map(str, body["unknown_rated"])) == ["999999", "not-an-id"]
    assert body["unknown_items"] == [123456789, "nope"]
    preds = [p["prediction"] for p in body["predictions"]]
    assert preds[0] is not None and preds[1] is None and preds[2] is None
    assert body["n_ratings_used"] == 4


def test_recommend_known_user_excludes_rated(server, fitted):
    user = int(fitted.user_ids_[3])
    body = server.post("/recommend", json={"user": user, "k": 10}).json()
    items = [r["item"] for r in body["items"]]
    assert len(items) == 10 and not set(items) & rated_items(fitted, user)
    assert items == fitted.recommend(user, 10)["item"].tolist()
    scores = [r["score"] for r in body["items"]]
    assert scores == sorted(scores, reverse=True)
    np.testing.assert_allclose(scores, fitted.recommend(user, 10)["score"], atol=1e-6)
    low, high = fitted.rating_range_
    np.testing.assert_allclose([r["prediction"] for r in body["items"]], np.clip(scores, low, high))


def test_recommend_new_user_matches_python_and_excludes_rated(server, fitted):
    ratings = some_ratings(fitted, 10, offset=20)
    body = server.post("/recommend", json={"ratings": ratings, "k": 15}).json()
    items = [r["item"] for r in body["items"]]
    assert not set(items) & {int(k) for k in ratings}
    expected = fitted.recommend_for({int(k): v for k, v in ratings.items()}, 15)
    assert items == expected.frame["item"].tolist()
    np.testing.assert_allclose([r["score"] for r in body["items"]], expected.frame["score"])


def test_k_larger_than_candidates_returns_what_exists(server, fitted):
    body = server.post("/recommend", json={"ratings": some_ratings(fitted, 5), "k": 1000})
    assert body.status_code == 200
    assert len(body.json()["items"]) == fitted.n_items - 5


BAD = [
    ("malformed json", "/recommend", b'{"user": 1, "k": ', "json"),
    ("not an object", "/predict", b"[1, 2, 3]", "object"),
    ("deeply nested", "/recommend", b"[" * 100_000 + b"]" * 100_000, "pars"),
    ("invalid utf-8", "/recommend", b'{"user": "\xff\xfe", "k": 3}', "pars"),
    ("user is a list", "/recommend", {"user": [1], "k": 5}, "user"),
    ("k is a string", "/recommend", {"user": 1, "k": "10"}, "k"),
    ("k is a float", "/recommend", {"user": 1, "k": 2.5}, "k"),
    ("k is zero", "/recommend", {"user": 1, "k": 0}, "k"),
    ("k is negative", "/recommend", {"user": 1, "k": -3}, "k"),
    ("k is huge", "/recommend", {"user": 1, "k": 10**12}, "k"),
    ("rating is text", "/recommend", {"ratings": {"10": "five"}}, "ratings"),
    ("rating is a bool", "/recommend", {"ratings": {"10": True}}, "ratings"),
    ("rating above scale", "/recommend", {"ratings": {"10": 6.0}}, "scale"),
    ("rating below scale", "/predict", {"ratings": {"10": 0.0}, "items": [10]}, "scale"),
    ("rating is NaN", "/recommend", b'{"ratings": {"10": NaN}}', "ratings"),
    ("rating is Infinity", "/recommend", b'{"ratings": {"10": Infinity}}', "ratings"),
    ("empty ratings", "/recommend", {"ratings": {}}, "empty"),
    ("only unknown items", "/recommend", {"ratings": {"424242": 3}}, "none of"),
    ("user and ratings", "/recommend", {"user": 1, "ratings": {"10": 3}}, "exactly one"),
    ("neither", "/recommend", {"k": 3}, "exactly one"),
    ("unexpected field", "/recommend", {"user": 1, "kk": 3}, "kk"),
    ("items missing", "/predict", {"user": 1}, "items"),
    ("items empty", "/predict", {"user": 1, "items": []}, "items"),
    ("items not a list", "/predict", {"user": 1, "items": 10}, "items"),
    ("too many items", "/predict", {"user": 1, "items": list(range(10_001))}, "items"),
    ("item id is a float", "/predict", {"user": 1, "items": [1.5]}, "items"),
]


@pytest.mark.parametrize(("name", "path", "payload", "mention"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_a_4xx_with_a_message(server, name, path, payload, mention):
    if isinstance(payload, bytes):
        response = server.post(path, content=payload, headers={"content-type": "application/json"})
    else:
        response = server.post(path, json=payload)
    assert 400 <= response.status_code < 500, response.text
    detail = response.json()["detail"]
    assert detail
    assert mention.lower() in str(detail).lower(), detail
    assert server.get("/health").status_code == 200  # still alive


@pytest.mark.parametrize(
    ("path", "extra"), [("/predict", {"items": [10]}), ("/recommend", {"k": 3})]
)
def test_unknown_user_is_404(server, path, extra):
    for user in (987654321, "someone", 10**30):
        response = server.post(path, json={"user": user, **extra})
        assert response.status_code == 404
        assert f"unknown user {user!r}" in response.json()["detail"]


def test_oversized_body_by_content_length(server):
    big = b'{"ratings": {' + b",".join(b'"%d": 3' % i for i in range(200_000)) + b"}}"
    response = server.post("/recommend", content=big, headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert "too large" in response.json()["detail"]
    assert server.get("/health").status_code == 200


def test_oversized_streamed_body_without_length(server):
    def chunks():  # chunked transfer encoding: no Content-Length to check up front
        yield b'{"ratings": {'
        for block in range(100):
            yield b",".join(b'"%d": 3' % (block * 10_000 + i) for i in range(1_000)) + b","
        yield b'"0": 3}}'

    response = server.post(
        "/recommend", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert server.get("/health").status_code == 200


def test_wrong_method_and_path(server):
    assert server.get("/recommend").status_code == 405
    assert server.get("/nope").status_code == 404


def test_scores_are_finite_numbers(server, fitted):
    body = server.post("/recommend", json={"user": int(fitted.user_ids_[0]), "k": 5}).json()
    assert all(math.isfinite(r["score"]) for r in body["items"])


def test_concurrent_requests_are_batched_correctly(server, fitted):
    """32 different new users at once: each answer equals its own predict_for."""
    import asyncio

    import httpx

    bodies = [some_ratings(fitted, 5, offset=(7 * n) % 80) for n in range(32)]
    items = fitted.item_ids_[:10].tolist()

    async def fire():
        async with httpx.AsyncClient(base_url=str(server.base_url), timeout=30) as client:
            return await asyncio.gather(
                *(client.post("/predict", json={"ratings": b, "items": items}) for b in bodies)
            )

    responses = asyncio.run(fire())
    for body, response in zip(bodies, responses, strict=True):
        got = [p["prediction"] for p in response.json()["predictions"]]
        expected = fitted.predict_for({int(k): v for k, v in body.items()}, items)
        np.testing.assert_allclose(got, expected.frame["prediction"], rtol=0, atol=1e-5)


def test_unbatched_app_gives_the_same_answers(fitted):
    import asyncio

    import httpx

    from deeprec.serve import create_app

    app = create_app(fitted, batching=False)
    ratings = some_ratings(fitted, 6)

    async def ask():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            a = await client.post("/recommend", json={"ratings": ratings, "k": 5})
            b = await client.post("/recommend", json={"user": int(fitted.user_ids_[1]), "k": 5})
            c = await client.post("/recommend", json={"ratings": {"10": 99}})
            return a, b, c

    a, b, c = asyncio.run(ask())
    expected = fitted.recommend_for({int(k): v for k, v in ratings.items()}, 5)
    assert [r["item"] for r in a.json()["items"]] == expected.frame["item"].tolist()
    expected_user = fitted.recommend(fitted.user_ids_[1], 5)["item"].tolist()
    assert [r["item"] for r in b.json()["items"]] == expected_user
    assert c.status_code == 422 and "scale" in c.json()["detail"]
