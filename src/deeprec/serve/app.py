"""FastAPI app factory: /health, /model, /predict, /recommend, /similar, /items over one
loaded model, and the page at / (static files shipped in deeprec/serve/static).

Every user mistake is a 4xx with a message naming the field: malformed JSON and wrong types
(422, from the Pydantic schemas), out-of-scale or empty ratings (422, DataError), unknown
user ids (404), oversized bodies (413, BodyLimitMiddleware), k or item lists over the limits
(422). Handlers are ``async`` and call the model inline: a fold-in is one small forward pass
(well under a millisecond), cheaper than a hop to a worker thread.
"""

# No `from __future__ import annotations` here: FastAPI must resolve the request models,
# which are built per app inside create_app (their limits are per app), at runtime.

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, model_validator

from deeprec.errors import DataError, DeepRecError, UnknownIdError
from deeprec.recommend.fitted import fitted_setting
from deeprec.recommend.foldin import fold_in_user
from deeprec.recommend.ids import parse_ratings, resolve
from deeprec.recommend.topn import top_k, user_index
from deeprec.serve.batching import ForwardBatcher
from deeprec.serve.limits import BodyLimitMiddleware

log = logging.getLogger("deeprec.serve")


@dataclass(frozen=True)
class Limits:
    """Per-request caps; they appear in the OpenAPI schema and in GET /model."""

    max_body_bytes: int = 1_000_000
    max_k: int = 1000
    max_items: int = 10_000
    max_ratings: int = 20_000
    max_users: int = 1_000  # users per POST /recommend/batch


RawId = StrictInt | StrictStr
Rating = Annotated[float, Field(strict=True, allow_inf_nan=False)]


def _batch_schema(limits: Limits) -> type[BaseModel]:
    class BatchRecommendRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")

        users: list[RawId] = Field(
            min_length=1, max_length=limits.max_users, description="Known users' raw ids."
        )
        k: StrictInt = Field(10, ge=1, le=limits.max_k, description="Items per user.")
        exclude_rated: bool = Field(True, description="Leave out items each user rated.")
        items: list[RawId] | None = Field(
            None,
            max_length=limits.max_items,
            description="Candidate raw item ids (unknown ones are ignored); all items if absent.",
        )

    return BatchRecommendRequest


def _schemas(limits: Limits) -> tuple[type[BaseModel], type[BaseModel]]:
    class _Who(BaseModel):
        model_config = ConfigDict(extra="forbid")

        user: RawId | None = Field(
            None, description="A known user's raw id (exactly one of user and ratings)."
        )
        ratings: dict[str, Rating] | None = Field(
            None,
            max_length=limits.max_ratings,
            description="A new user as {raw item id: rating}; ratings on the model's scale.",
        )

        @model_validator(mode="after")
        def _one_of(self) -> Any:
            if (self.user is None) == (self.ratings is None):
                raise ValueError("give exactly one of 'user' (a known id) or 'ratings'")
            return self

    class PredictRequest(_Who):
        items: list[RawId] = Field(
            min_length=1, max_length=limits.max_items, description="Raw item ids to predict."
        )

    class RecommendRequest(_Who):
        k: StrictInt = Field(10, ge=1, le=limits.max_k, description="Number of items.")
        exclude_rated: bool = Field(True, description="Leave out items the user rated.")

    return PredictRequest, RecommendRequest


class Prediction(BaseModel):
    item: RawId
    title: str | None = Field(None, description="the item's title, when the model has titles")
    prediction: float | None = Field(description="null when the item is unknown to the model")


class PredictResponse(BaseModel):
    user: RawId | None
    predictions: list[Prediction]
    unknown_items: list[RawId]
    unknown_rated: list[RawId]
    n_ratings_used: int | None


class Scored(BaseModel):
    item: RawId
    title: str | None = None  # the item's title, when the model has titles
    score: float  # unclipped: what the list is ranked by (may exceed the rating scale)
    prediction: float  # the score clipped to the rating scale


class RecommendResponse(BaseModel):
    user: RawId | None
    items: list[Scored]
    unknown_rated: list[RawId]
    n_ratings_used: int | None


class UserItems(BaseModel):
    user: RawId
    items: list[Scored]


class BatchRecommendResponse(BaseModel):
    results: list[UserItems]
    unknown_users: list[RawId]


class Similar(BaseModel):
    item: RawId
    title: str | None = None
    similarity: float


class SimilarResponse(BaseModel):
    item: RawId
    title: str | None = None
    items: list[Similar]


class ItemInfo(BaseModel):
    item: RawId
    title: str | None
    genres: str | None = Field(None, description="genres as A|B, when known")
    n_ratings: int = Field(description="training ratings of the item")


class ItemsResponse(BaseModel):
    query: str
    items: list[ItemInfo]


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _missing(value: Any) -> Any:
    """NaN (pandas' missing value) as None (JSON null)."""
    return None if isinstance(value, float) and value != value else value


def _validation_message(errors: list[Any]) -> list[dict[str, Any]]:
    """Pydantic errors without the echoed input (bodies can be large) or exception objects."""
    return [
        {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type")}
        for e in errors
    ]


def create_app(
    model: Any,
    run_info: dict[str, Any] | None = None,
    limits: Limits | None = None,
    *,
    batching: bool = True,
):
    """A FastAPI app serving `model` (a fitted Recommender); `run_info` is shown at /model.

    With `batching` (default), user-based autoencoders run concurrent requests as one
    forward pass (see deeprec.serve.batching); other models are called per request.
    """
    limits = limits or Limits()
    model._check_fitted()
    PredictRequest, RecommendRequest = _schemas(limits)
    BatchRecommendRequest = _batch_schema(limits)
    started = time.time()
    info = {
        "model": type(model).__name__,
        "n_users": model.n_users,
        "n_items": model.n_items,
        "rating_range": list(model.rating_range_),
        "orientation": fitted_setting(model, "orientation", "user"),
        "params": model.get_params(),
        "limits": asdict(limits),
        **(run_info or {}),
    }
    if hasattr(model, "module_"):
        info["architecture"] = model.module_.architecture()  # the loaded weights decide
    info["new_users"] = _can_fold_in(model)
    info["has_titles"] = bool(getattr(model, "has_titles", False))
    titles = model.item_titles_ if info["has_titles"] else None

    def title_of(index: int) -> str | None:
        return None if titles is None else titles[index]

    app = FastAPI(
        title="deeprec",
        summary="Deep-autoencoder recommendations for known and brand-new users.",
        version="1",
    )
    app.add_middleware(BodyLimitMiddleware, max_bytes=limits.max_body_bytes)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _validation_message(exc.errors())}, status_code=422)

    @app.exception_handler(UnknownIdError)
    async def _unknown(_request: Request, exc: UnknownIdError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(DeepRecError)
    async def _bad(_request: Request, exc: DeepRecError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(Exception)
    async def _bug(_request: Request, exc: Exception) -> JSONResponse:  # pragma: no cover
        log.exception("internal error")
        return JSONResponse({"detail": f"internal error: {type(exc).__name__}"}, 500)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Liveness: the model is loaded and answers."""
        return {"status": "ok", "uptime_s": round(time.time() - started, 3)}

    @app.get("/model")
    async def model_info() -> dict[str, Any]:
        """Metadata: dataset, architecture, metrics, limits."""
        return info

    batcher = ForwardBatcher.for_model(model) if batching else None
    info["batching"] = batcher is not None
    low, high = model.rating_range_

    async def centred_forward(index: np.ndarray, values: np.ndarray, u: int | None) -> Any:
        """The batched forward pass; a center="bias" model sees residuals, a standardised
        one residuals over its spread (estimator.py)."""
        base = model.user_baseline(index, values, u) if hasattr(model, "user_baseline") else None
        scale = float(getattr(model, "output_scale", 1.0))
        if base is None and scale == 1.0:
            return await batcher(index, values)
        if base is None:
            base = np.zeros(model.n_items)
        return await batcher(index, (values - base[index]) / scale) * scale + base

    async def scores_of(user: Any, ratings: dict[str, float] | None) -> dict[str, Any]:
        """Raw scores over all items, the rated item indices, and what was not used."""
        if user is not None:
            u = user_index(model, user)
            inputs = model.input_ratings()  # training (+ validation: DeepRec's predict_inputs)
            lo, hi = inputs.indptr[u], inputs.indptr[u + 1]
            index = inputs.indices[lo:hi].astype(np.int64)
            if batcher is not None:
                scores = await centred_forward(index, inputs.values[lo:hi], u)
            else:
                with torch.inference_mode():
                    scores = model._score_users(np.array([u]))[0]
            known = model.known_ratings()  # every rated item is left out, validation too
            rated = known.indices[known.indptr[u] : known.indptr[u + 1]].astype(np.int64)
            return {"scores": scores, "rated": rated, "unknown": [], "used": None}
        index, values, unknown = parse_ratings(model.item_ids_, ratings, model.rating_range_)
        if batcher is not None:
            scores = await centred_forward(index, values, None)
        else:
            with torch.inference_mode():
                scores = fold_in_user(model, index, values)
        return {"scores": scores, "rated": index, "unknown": unknown, "used": len(index)}

    @app.post("/predict", response_model=PredictResponse)
    async def predict(body: PredictRequest) -> dict[str, Any]:  # type: ignore[valid-type]
        """Predicted ratings of `items` for a known `user` or a new user's `ratings`."""
        got = await scores_of(body.user, body.ratings)
        items, known = resolve(model.item_ids_, body.items)
        preds = np.full(len(body.items), np.nan)
        preds[known] = np.clip(got["scores"][items[known]], low, high)
        return {
            "user": body.user,
            "predictions": [
                {
                    "item": item,
                    "title": title_of(i) if ok else None,
                    "prediction": None if p != p else p,
                }
                for item, i, ok, p in zip(
                    body.items, items.tolist(), known.tolist(), preds.tolist(), strict=True
                )
            ],
            "unknown_items": [body.items[i] for i in np.flatnonzero(~known)],
            "unknown_rated": [_plain(v) for v in got["unknown"]],
            "n_ratings_used": got["used"],
        }

    @app.post("/recommend", response_model=RecommendResponse)
    async def recommend(body: RecommendRequest) -> dict[str, Any]:  # type: ignore[valid-type]
        """Top-k items (rated ones excluded) for a known `user` or a new user's `ratings`."""
        got = await scores_of(body.user, body.ratings)
        scores = torch.from_numpy(np.asarray(got["scores"], dtype=np.float64))[None, :]
        rated = torch.from_numpy(got["rated"])
        exclude = (torch.zeros_like(rated), rated) if body.exclude_rated else None
        best, order, valid = top_k(scores, body.k, exclude)
        keep = order[0][valid[0]].numpy()
        values = best[0][valid[0]].numpy()
        clipped = np.clip(values, low, high)
        return {
            "user": body.user,
            "items": [
                {"item": i, "title": title_of(j), "score": v, "prediction": c}
                for i, j, v, c in zip(
                    model.item_ids_[keep].tolist(),
                    keep.tolist(),
                    values.tolist(),
                    clipped.tolist(),
                    strict=True,
                )
            ],
            "unknown_rated": [_plain(v) for v in got["unknown"]],
            "n_ratings_used": got["used"],
        }

    @app.post("/recommend/batch", response_model=BatchRecommendResponse)
    async def recommend_batch(body: BatchRecommendRequest) -> dict[str, Any]:  # type: ignore[valid-type]
        """Top-k items for many known users at once, optionally among candidate `items`
        (the Python API's `recommend([users], items=..., exclude_seen=...)`)."""
        from starlette.concurrency import run_in_threadpool

        from deeprec.recommend.topn import recommend_users

        frame = await run_in_threadpool(
            recommend_users,
            model,
            list(body.users),
            body.k,
            exclude_seen=body.exclude_rated,
            items=body.items,
            on_unknown="skip",
        )
        known = set(model.item_ids_.tolist())
        index = {v: i for i, v in enumerate(model.item_ids_.tolist())}
        grouped: dict[Any, list[dict[str, Any]]] = {}
        for row in frame.itertuples(index=False):
            item = _plain(row.item)
            grouped.setdefault(_plain(row.user), []).append(
                {
                    "item": item,
                    "title": title_of(index[item]) if item in known else None,
                    "score": float(row.score),
                    "prediction": float(row.prediction),
                }
            )
        served = set(model.user_ids_.tolist())
        return {
            "results": [
                {"user": u, "items": grouped.get(u, [])} for u in body.users if u in served
            ],
            "unknown_users": [u for u in body.users if u not in served],
        }

    @app.get("/similar", response_model=SimilarResponse)
    async def similar(
        item: Annotated[str, Query(description="A known item's raw id.")],
        k: Annotated[int, Query(ge=1, le=limits.max_k)] = 10,
    ) -> dict[str, Any]:
        """The k items most similar to `item` (cosine of the model's item vectors)."""
        raw = _raw_item(model, item)
        try:
            frame = model.similar_items(raw, k)
        except NotImplementedError as exc:
            raise DataError(f"{type(model).__name__} has no item vectors ({exc})") from None
        id_column = frame.columns[0]
        return {
            "item": _plain(raw),
            "title": model.item_titles([raw])[0] if info["has_titles"] else None,
            "items": [
                {"item": _plain(i), "title": t, "similarity": float(v)}
                for i, t, v in zip(
                    frame[id_column].tolist(),
                    frame["title"].tolist() if "title" in frame else [None] * len(frame),
                    frame["similarity"].tolist(),
                    strict=True,
                )
            ],
        }

    @app.get("/items", response_model=ItemsResponse)
    async def search_items(
        q: Annotated[str, Query(max_length=200, description="Words the title contains.")] = "",
        limit: Annotated[int, Query(ge=1, le=limits.max_k)] = 20,
    ) -> dict[str, Any]:
        """Items whose title contains every word of `q` (case-insensitive), most-rated first.
        Empty when the model has no titles (prepare the data with item metadata)."""
        frame = model.search_items(q, limit) if hasattr(model, "search_items") else None
        rows = [] if frame is None else frame.to_dict(orient="records")
        return {"query": q, "items": [{k: _missing(_plain(v)) for k, v in r.items()} for r in rows]}

    page = _page_files()

    @app.get("/", include_in_schema=False)
    async def index() -> Response:
        """The page to try the model (deeprec/serve/static/index.html)."""
        return page("index.html")

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str) -> Response:
        return page(name)

    return app


STATIC_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}


def _page_files() -> Any:
    """A lookup of the page's files, read once from the package (no file system paths from
    the request: only the names shipped in deeprec/serve/static are served)."""
    from importlib.resources import files

    folder = files("deeprec.serve") / "static"
    shipped = {
        entry.name: entry.read_bytes()
        for entry in folder.iterdir()
        if entry.is_file() and Path(entry.name).suffix in STATIC_TYPES
    }

    def page(name: str) -> Response:
        body = shipped.get(name)
        if body is None:
            return JSONResponse({"detail": f"no such file: {name}"}, status_code=404)
        return Response(body, media_type=STATIC_TYPES[Path(name).suffix])

    return page


def _can_fold_in(model: Any) -> bool:
    """Whether the model serves new users (user-based fold-in); item-based ones do not."""
    if fitted_setting(model, "orientation", "user") != "user":
        return False
    try:
        low, high = model.rating_range_
        fold_in_user(model, np.array([0], np.int64), np.array([(low + high) / 2], np.float64))
    except (DataError, NotImplementedError, RuntimeError):
        return False
    return True


def _raw_item(model: Any, item: str) -> Any:
    """A query-string item id as the model's id type (ints for integer ids)."""
    if model.item_ids_.dtype.kind in "iu":
        try:
            return int(item)
        except ValueError:
            raise UnknownIdError(f"unknown item {item!r}", field="item") from None
    return item
