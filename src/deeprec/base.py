"""The estimator contract every model (DeepRec and the baselines) follows.

scikit-learn conventions: hyper-parameters are explicit ``__init__`` keywords stored as-is,
``fit`` returns self, fitted state ends in ``_``. Everything speaks raw ids at the edges
and contiguous indices inside. Saved models are a directory::

    model.json           class name, hyper-parameters, fitted metadata (no code)
    weights.safetensors  every tensor (model weights, the training ratings as CSR and,
                         when the fit had one, the validation ratings as CSR)
    user_ids.npy, item_ids.npy   raw-id maps (loaded with allow_pickle=False)
    items.parquet        optional item titles and genres (item, title, genres)

Loading never executes code: only classes listed in ``KNOWN_MODELS`` can be named.
"""

from __future__ import annotations

import importlib
import inspect
import json
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np

from deeprec.atomic import atomic_directory
from deeprec.data.dataset import PreparedDataset, lookup
from deeprec.data.sparse import CSRMatrix
from deeprec.errors import CheckpointError, DataError

MODEL_FORMAT_VERSION = 1

# class name -> module; load_model() imports only these.
KNOWN_MODELS: dict[str, str] = {
    "DeepRec": "deeprec.estimator",
    "BiasOnly": "deeprec.baselines.bias",
    "BiasedMF": "deeprec.baselines.mf",
    "AutoRec": "deeprec.baselines.autorec",
    "Ensemble": "deeprec.ensemble",
}


def as_dataset(
    train: Any, valid: Any = None, *, columns: dict[str, str] | None = None
) -> PreparedDataset:
    """A PreparedDataset as-is, or DataFrames indexed by their training ids.

    `valid` is a validation table, or scikit-learn's y: the ratings of `train`'s rows when
    `train` holds only user and item ids (then there is no validation split). `columns`
    maps deeprec's column names to the tables' (see deeprec.frames).
    """
    from deeprec.frames import check_columns, is_target, ratings_table

    mapping = check_columns(columns)
    if isinstance(train, PreparedDataset):
        if valid is not None:
            raise DataError("pass valid only with a DataFrame; a prepared dataset has its own")
        return train
    if is_target(valid):
        return PreparedDataset.from_tables(ratings_table(train, mapping, y=valid))
    return PreparedDataset.from_tables(
        ratings_table(train, mapping),
        None if valid is None else ratings_table(valid, mapping),
    )


class Recommender:
    """Base class: raw-id bookkeeping, predict/score/recommend, safe save/load.

    Subclasses implement ``_fit_dataset``, ``_predict_indices``, ``_score_users`` and
    ``_state_dict``/``_load_state_dict``; ``_fold_in`` where the model can serve new users.
    """

    # Fitted state shared by every model.
    user_ids_: np.ndarray
    item_ids_: np.ndarray
    train_: CSRMatrix
    valid_: CSRMatrix  # the fit's validation ratings (given or carved); empty without one
    rating_range_: tuple[float, float]
    global_mean_: float

    model_name: ClassVar[str] = "Recommender"

    # ----------------------------------------------------------- sklearn API
    def __sklearn_tags__(self) -> Any:
        """scikit-learn >= 1.6 asks every estimator for its tags (clone, GridSearchCV,
        cross_val_score): a regressor of ratings from (user, item) ids. Imported here, so
        scikit-learn stays optional."""
        from sklearn.utils import InputTags, RegressorTags, Tags, TargetTags

        return Tags(
            estimator_type="regressor",
            target_tags=TargetTags(required=False),  # y may also be a column of X
            regressor_tags=RegressorTags(),
            input_tags=InputTags(two_d_array=True, string=True, categorical=True),
            non_deterministic=True,  # fast compute picks strategies by timing
        )

    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [
            p.name
            for p in sig.parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> Self:
        valid = set(self._param_names())
        for key, value in params.items():
            if key not in valid:
                raise ValueError(f"unknown parameter {key!r} for {type(self).__name__}")
            setattr(self, key, value)
        return self

    def _saved_params(self) -> dict[str, Any]:
        """The keywords model.json stores (what loading passes to the constructor)."""
        return self.get_params()

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # ------------------------------------------------------------------ fit
    def fit(self, train: Any, valid: Any = None, *, columns: dict[str, str] | None = None) -> Self:
        """Fit on a DataFrame (user, item, rating columns), a PreparedDataset, or
        scikit-learn's (X, y): X the user and item ids, y the ratings."""
        dataset = self._input_dataset(train, valid, columns)
        self._set_index(dataset)
        self._fit_dataset(dataset)
        return self

    def _input_dataset(
        self, train: Any, valid: Any, columns: dict[str, str] | None
    ) -> PreparedDataset:
        """What every fit starts with: the dataset, and the column mapping to remember."""
        from deeprec.frames import check_columns

        dataset = as_dataset(train, valid, columns=columns)
        self.columns_ = check_columns(columns)
        return dataset

    def _columns(self, columns: dict[str, str] | None) -> dict[str, str]:
        """The mapping a call uses: its own, else the one given to fit."""
        from deeprec.frames import check_columns

        if columns is not None:
            return check_columns(columns)
        return dict(getattr(self, "columns_", {}) or {})

    def _set_index(self, dataset: PreparedDataset) -> None:
        self.user_ids_ = dataset.user_ids
        self.item_ids_ = dataset.item_ids
        self.train_ = dataset.csr("train")
        self.valid_ = dataset.csr("valid")
        self.rating_range_ = dataset.rating_range
        ratings = dataset.train.ratings
        self.global_mean_ = float(ratings.mean()) if ratings.shape[0] else 0.0
        self._set_item_metadata(getattr(dataset, "items", None))

    def _set_item_metadata(self, table: Any) -> None:
        """Titles and genres aligned with item_ids_ (deeprec.data.items), or None."""
        from deeprec.data.items import titles_array

        found = titles_array(table, self.item_ids_)
        self.item_titles_, self.item_genres_ = found if found is not None else (None, None)
        self._titles_folded = self._item_counts = None  # caches of search_items

    @property
    def has_titles(self) -> bool:
        return getattr(self, "item_titles_", None) is not None

    def item_titles(self, items: Any) -> list[str | None]:
        """Titles of raw item ids (None for unknown items or items without a title)."""
        self._check_fitted()
        index = lookup(self.item_ids_, np.asarray(items))
        if not self.has_titles:
            return [None] * index.shape[0]
        return [self.item_titles_[i] if i >= 0 else None for i in index.tolist()]

    def search_items(self, query: str = "", limit: int = 20) -> Any:
        """Items whose title contains every word of `query` (case-insensitive; the raw id
        when the model has no titles): DataFrame (item, title, genres, n_ratings), most
        rated first. An empty query lists the most-rated items."""
        import pandas as pd

        self._check_fitted()
        words = [w for w in str(query).casefold().split() if w]
        lowered = getattr(self, "_titles_folded", None)
        if lowered is None:
            texts = self.item_titles_ if self.has_titles else self.item_ids_.astype(str)
            lowered = [(t or "").casefold() for t in texts]
            self._titles_folded = lowered
        if words:
            hits = [i for i, t in enumerate(lowered) if all(w in t for w in words)]
        else:
            hits = [i for i, t in enumerate(lowered) if t]
        hits_array = np.asarray(hits, dtype=np.int64)
        counts = self.item_rating_counts()[hits_array]
        order = np.lexsort((hits_array, -counts))[: max(int(limit), 0)]
        chosen = hits_array[order]
        titles = self.item_titles_ if self.has_titles else None
        genres = self.item_genres_ if self.has_titles else None
        return pd.DataFrame(
            {
                "item": self.item_ids_[chosen],
                "title": [None if titles is None else titles[i] for i in chosen],
                "genres": [None if genres is None else genres[i] for i in chosen],
                "n_ratings": counts[order],
            }
        )

    def item_rating_counts(self) -> np.ndarray:
        """Ratings per item in the fit's training and validation splits (aligned with
        item_ids_)."""
        counts = getattr(self, "_item_counts", None)
        if counts is None:
            known = self.known_ratings()
            counts = np.bincount(known.indices, minlength=self.n_items).astype(np.int64)
            self._item_counts = counts
        return counts

    def known_ratings(self) -> CSRMatrix:
        """Every rating the fit was given, users x items: training plus validation (given
        or carved). What "items the user rated" means for top-N exclusion; never test."""
        from deeprec.data.prediction_inputs import merge_ratings

        valid = getattr(self, "valid_", None)
        cached = getattr(self, "_known_cache", None)
        if cached is not None and cached[0] is self.train_ and cached[1] is valid:
            return cached[2]
        merged = merge_ratings(self.train_, valid)
        self._known_cache = (self.train_, valid, merged)
        return merged

    def input_ratings(self) -> CSRMatrix:
        """The ratings a known user's prediction is computed from, users x items: the
        training ratings here; DeepRec adds validation ones (its `predict_inputs`)."""
        return self.train_

    def _with_titles(self, frame: Any, column: str = "item") -> Any:
        """`frame` with a title column after `column` when the model has titles."""
        if not self.has_titles or column not in frame.columns:
            return frame
        frame = frame.copy()
        frame.insert(
            frame.columns.get_loc(column) + 1, "title", self.item_titles(frame[column].to_numpy())
        )
        return frame

    @property
    def n_users(self) -> int:
        return int(self.user_ids_.shape[0])

    @property
    def n_items(self) -> int:
        return int(self.item_ids_.shape[0])

    def _check_fitted(self) -> None:
        if not hasattr(self, "user_ids_"):
            raise DataError(f"this {type(self).__name__} is not fitted yet; call fit() first")

    # -------------------------------------------------------------- predict
    def known(self, users: Any, items: Any) -> tuple[np.ndarray, np.ndarray]:
        """Whether each raw user id and each raw item id was seen in training."""
        self._check_fitted()
        return (
            lookup(self.user_ids_, np.asarray(users)) >= 0,
            lookup(self.item_ids_, np.asarray(items)) >= 0,
        )

    def predict(
        self,
        users: Any,
        items: Any = None,
        *,
        columns: dict[str, str] | None = None,
        unknown: str = "fallback",
        clip: bool = True,
    ) -> np.ndarray:
        """Predicted ratings for parallel arrays of raw user and item ids, or for a table of
        (user, item) ids given alone (scikit-learn's ``predict(X)``; `columns` names them).

        Pairs with an unknown user or item get the training mean (``unknown="fallback"``),
        NaN (``"nan"``), or raise (``"raise"``). Predictions are clipped to the training
        rating range unless `clip` is false.
        """
        if items is None:
            from deeprec.frames import id_columns

            self._check_fitted()
            users, items = id_columns(users, self._columns(columns))
        self._check_fitted()
        u = lookup(self.user_ids_, np.asarray(users))
        i = lookup(self.item_ids_, np.asarray(items))
        if u.shape != i.shape:
            raise DataError(f"users and items differ in length ({u.shape[0]} vs {i.shape[0]})")
        known = (u >= 0) & (i >= 0)
        if unknown == "raise" and not known.all():
            bad = int(np.flatnonzero(~known)[0])
            raise DataError(
                f"unknown user or item at position {bad}: "
                f"user={np.asarray(users)[bad]!r}, item={np.asarray(items)[bad]!r}"
            )
        if unknown not in ("fallback", "nan", "raise"):
            raise ValueError("unknown must be 'fallback', 'nan' or 'raise'")
        out = np.full(u.shape, self.global_mean_ if unknown == "fallback" else np.nan, np.float64)
        if known.any():
            out[known] = self._predict_indices(u[known], i[known])
        if clip:
            low, high = self.rating_range_
            out = np.clip(out, low, high)
        return out

    def score(
        self,
        test: Any,
        y: Any = None,
        split: str = "test",
        *,
        columns: dict[str, str] | None = None,
    ) -> Any:
        """RMSE and MAE on a DataFrame of raw-id ratings or a PreparedDataset's split.

        Returns a dict: ``rmse``/``mae`` use predictions clipped to the rating scale (the
        headline); ``rmse_unclipped``/``mae_unclipped`` are reported beside them, with ``n``
        and ``n_unknown``. ``score(dataset, "valid")`` still names the split.

        scikit-learn form, ``score(X, y)`` (X user and item ids, y ratings): returns one
        float, minus the clipped RMSE, so that greater is better and GridSearchCV's default
        scoring selects on RMSE (as ``scoring="neg_root_mean_squared_error"`` does).
        """
        if isinstance(y, str):  # score(dataset, "valid"): the split, positionally
            split, y = y, None
        if is_target := y is not None:
            from deeprec.frames import id_columns

            self._check_fitted()
            users, items = id_columns(test, self._columns(columns))
            truth = np.asarray(y, dtype=np.float64).reshape(-1)
            if truth.shape[0] != users.shape[0]:
                raise DataError(f"X has {users.shape[0]} rows but y has {truth.shape[0]}")
        elif isinstance(test, PreparedDataset):
            part = test.split(split)
            users = test.user_ids[part.users]
            items = test.item_ids[part.items]
            truth = part.ratings.astype(np.float64)
        else:
            from deeprec.data.table import ITEM, RATING, USER, ids_to_numpy
            from deeprec.frames import ratings_table

            table = ratings_table(test, self._columns(columns))
            users = ids_to_numpy(table.get_column(USER))
            items = ids_to_numpy(table.get_column(ITEM))
            truth = table.get_column(RATING).to_numpy().astype(np.float64)
        if truth.shape[0] == 0:
            raise DataError("cannot score on an empty set of ratings")
        raw = self.predict(users, items, clip=False)
        low, high = self.rating_range_
        clipped = np.clip(raw, low, high)
        n_unknown = int(
            ((lookup(self.user_ids_, users) < 0) | (lookup(self.item_ids_, items) < 0)).sum()
        )
        if is_target:
            return -float(np.sqrt(np.mean((clipped - truth) ** 2)))
        return {
            "rmse": float(np.sqrt(np.mean((clipped - truth) ** 2))),
            "mae": float(np.mean(np.abs(clipped - truth))),
            "rmse_unclipped": float(np.sqrt(np.mean((raw - truth) ** 2))),
            "mae_unclipped": float(np.mean(np.abs(raw - truth))),
            "n": int(truth.shape[0]),
            "n_unknown": n_unknown,
        }

    # ------------------------------------------- top-N and fold-in (deeprec.recommend)
    def recommend(
        self,
        user: Any,
        k: int = 10,
        *,
        exclude_rated: bool = True,
        exclude_seen: bool | None = None,
        items: Any = None,
        on_unknown: str = "raise",
        columns: dict[str, str] | None = None,
    ) -> Any:
        """Top-k items of known users, ranked by the unclipped score.

        One user id: a DataFrame (item, score, prediction), best first. A list, array or
        Series of user ids: one DataFrame (user, rank, item, score, prediction) for all of
        them (unknown ones raise UnknownIdError, or are left out with
        ``on_unknown="skip"``; use `recommend_for` for new users). `exclude_seen` (alias
        `exclude_rated`) drops items the user rated in training; `items` restricts the
        candidates to those raw item ids (unknown ones are ignored). ``score`` is the
        model's unclipped output, ``prediction`` that clipped to the rating scale. The
        user/item columns are named as in `columns` (or the mapping given to fit).
        """
        from deeprec.frames import rename_output
        from deeprec.recommend.topn import recommend_user, recommend_users

        exclude = exclude_rated if exclude_seen is None else exclude_seen
        if _is_many(user):
            frame = recommend_users(
                self, list(user), k, exclude_seen=exclude, items=items, on_unknown=on_unknown
            )
        else:
            frame = recommend_user(self, user, k, exclude_rated=exclude, items=items)
        return rename_output(self._with_titles(frame), self._columns(columns))

    def similar_items(self, item: Any, k: int = 10) -> Any:
        """The k items most similar to `item` (a raw id) by cosine similarity of the
        model's learned item representations: DataFrame (item, similarity), best first.

        What the representation is depends on the model (``_item_vectors``): for DeepRec,
        user-based, the item's row of the output layer (the weights its predicted rating
        is read through); item-based, the code-layer encoding of the item's training
        ratings. Baselines without item vectors raise NotImplementedError."""
        from deeprec.frames import rename_output
        from deeprec.recommend.similar import similar_items

        return rename_output(self._with_titles(similar_items(self, item, k)), self._columns(None))

    def recommend_for(
        self, ratings: Any, k: int = 10, *, exclude_rated: bool = True, on_unknown: str = "report"
    ) -> Any:
        """Top-k for a new user given as {raw item id: rating}: a FoldInResult whose
        ``unknown_rated`` lists the rated ids the model does not know."""
        from deeprec.recommend.foldin import recommend_for

        result = recommend_for(self, ratings, k, exclude_rated=exclude_rated, on_unknown=on_unknown)
        from dataclasses import replace

        return replace(result, frame=self._with_titles(result.frame))

    def predict_for(
        self, ratings: Any, items: Any, *, clip: bool = True, on_unknown: str = "report"
    ) -> Any:
        """Predicted ratings of `items` for a new user given as {raw item id: rating}."""
        from deeprec.recommend.foldin import predict_for

        return predict_for(self, ratings, items, clip=clip, on_unknown=on_unknown)

    def predict_for_item(
        self, ratings: Any, users: Any, *, clip: bool = True, on_unknown: str = "report"
    ) -> Any:
        """Item-based models: predictions of a new item (given {raw user id: rating}) by `users`."""
        from deeprec.recommend.foldin import predict_for_item

        return predict_for_item(self, ratings, users, clip=clip, on_unknown=on_unknown)

    def recommend_all(
        self,
        out: str | Path,
        *,
        users: Any = None,
        k: int = 10,
        exclude_rated: bool = True,
        chunk_size: int = 512,
    ) -> dict[str, Any]:
        """Write every (or the listed) user's top-k to Parquet/CSV atomically, in chunks."""
        from deeprec.recommend.topn import write_top_n

        return write_top_n(
            self, out, users=users, k=k, exclude_rated=exclude_rated, chunk_size=chunk_size
        )

    # ------------------------------------------------------ subclass hooks
    def _fit_dataset(self, dataset: PreparedDataset) -> None:
        raise NotImplementedError

    def _predict_indices(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Unclipped predictions for known (user index, item index) pairs."""
        raise NotImplementedError

    def _score_users(self, users: np.ndarray) -> np.ndarray:
        """Unclipped predictions over all items for known user indices: (len(users), n_items)."""
        raise NotImplementedError

    def _fold_in(self, items: np.ndarray, ratings: np.ndarray) -> np.ndarray:
        """Predictions over all items for a new user given (item index, rating) pairs."""
        raise NotImplementedError(f"{type(self).__name__} cannot fold in new users")

    def _fold_in_item(self, users: np.ndarray, ratings: np.ndarray) -> np.ndarray:
        """Predictions over all users for a new item given (user index, rating) pairs."""
        raise NotImplementedError(f"{type(self).__name__} cannot fold in new items")

    def _state_dict(self) -> dict[str, Any]:
        """Model tensors (torch) to save; the base class adds the training matrix."""
        raise NotImplementedError

    def _load_state_dict(self, state: dict[str, Any]) -> None:
        raise NotImplementedError

    def _fitted_meta(self) -> dict[str, Any]:
        """Extra JSON-serialisable fitted state (histories, metrics...)."""
        return {}

    def _load_fitted_meta(self, meta: dict[str, Any]) -> None:
        return None

    # ------------------------------------------------------------ save/load
    def save(self, path: str | Path, *, overwrite: bool = True) -> Path:
        """Write the model directory atomically (see module docstring)."""
        import torch
        from safetensors.torch import save_file

        self._check_fitted()
        state = {k: v.detach().cpu().contiguous() for k, v in self._state_dict().items()}
        state["_train.indptr"] = torch.from_numpy(self.train_.indptr.astype(np.int64))
        state["_train.indices"] = torch.from_numpy(self.train_.indices.astype(np.int32))
        state["_train.values"] = torch.from_numpy(self.train_.values.astype(np.float32))
        valid = getattr(self, "valid_", None)
        if valid is not None and valid.nnz:
            state["_valid.indptr"] = torch.from_numpy(valid.indptr.astype(np.int64))
            state["_valid.indices"] = torch.from_numpy(valid.indices.astype(np.int32))
            state["_valid.values"] = torch.from_numpy(valid.values.astype(np.float32))
        info = {
            "format_version": MODEL_FORMAT_VERSION,
            "class": self.model_name,
            "params": self._saved_params(),
            "n_users": self.n_users,
            "n_items": self.n_items,
            "rating_range": list(self.rating_range_),
            "global_mean": self.global_mean_,
            "columns": getattr(self, "columns_", {}),
            "fitted": self._fitted_meta(),
        }
        with atomic_directory(path, overwrite=overwrite) as tmp:
            save_file(state, str(tmp / "weights.safetensors"))
            np.save(tmp / "user_ids.npy", self.user_ids_, allow_pickle=False)
            np.save(tmp / "item_ids.npy", self.item_ids_, allow_pickle=False)
            (tmp / "model.json").write_text(json.dumps(info, indent=2, default=_json_default))
            if self.has_titles:
                from deeprec.data.items import table_of

                table_of(self.item_titles_, self.item_genres_, self.item_ids_).write_parquet(
                    tmp / "items.parquet", statistics=False
                )
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> Recommender:
        """Load a saved model; refuses pickle files and classes not in KNOWN_MODELS."""
        model = load_model(path)
        if cls is not Recommender and not isinstance(model, cls):
            raise CheckpointError(f"{path} holds a {type(model).__name__}, not a {cls.__name__}")
        return model


def _load_model_items(root: Path) -> Any:
    """A saved model's item titles (items.parquet beside model.json), or None."""
    from deeprec.data.dataset import ITEMS_FILE, _load_items

    try:
        return _load_items(root / ITEMS_FILE)
    except DataError as exc:
        raise CheckpointError(str(exc)) from None


def _load_valid(state: dict[str, Any], shape: tuple[int, int]) -> CSRMatrix:
    """The saved validation ratings (popped from `state`); empty when the file has none
    (a fit without validation, or a model saved before they were kept)."""
    parts = [state.pop(f"_valid.{k}", None) for k in ("indptr", "indices", "values")]
    if all(p is None for p in parts):
        empty = np.zeros(0)
        return CSRMatrix(
            np.zeros(shape[0] + 1, np.int64),
            empty.astype(np.int32),
            empty.astype(np.float32),
            shape,
        )
    if any(p is None for p in parts):
        raise CheckpointError("the weights hold part of the validation matrix only")
    indptr, indices, values = (p.numpy() for p in parts)
    if indptr.shape != (shape[0] + 1,) or indices.shape != values.shape:
        raise CheckpointError("the saved validation matrix does not match the model's id maps")
    if indices.size and (int(indices.min()) < 0 or int(indices.max()) >= shape[1]):
        raise CheckpointError("the saved validation matrix names items outside the id maps")
    if int(indptr[0]) != 0 or int(indptr[-1]) != indices.shape[0] or (np.diff(indptr) < 0).any():
        raise CheckpointError("the saved validation matrix has an invalid row pointer")
    return CSRMatrix(indptr=indptr, indices=indices, values=values, shape=shape)


def _is_many(user: Any) -> bool:
    """A collection of user ids (batch recommend) rather than one id."""
    if isinstance(user, (str, bytes)) or np.isscalar(user):
        return False
    return isinstance(user, (list, tuple, set, np.ndarray)) or hasattr(user, "to_numpy")


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (tuple, set)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} in model.json")


def load_model(path: str | Path) -> Recommender:
    """Load any saved deeprec model without executing code from the file."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from deeprec.safe_files import refuse_pickle, require_safetensors

    root = Path(path)
    refuse_pickle(root, what="model")  # reliability (issue 8): .pt/.pkl/pickle bytes
    if root.is_file():
        raise CheckpointError(
            f"{root} is a single file; deeprec models are directories with model.json and "
            "weights.safetensors (pickle-based .pt/.pkl files are refused: they can run code)"
        )
    info_path = root / "model.json"
    weights_path = root / "weights.safetensors"
    if not info_path.is_file() or not weights_path.is_file():
        raise CheckpointError(
            f"{root} is not a saved deeprec model (model.json or weights missing)"
        )
    try:
        info = json.loads(info_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{info_path} is not valid JSON ({exc})") from exc
    if not isinstance(info, dict):
        raise CheckpointError(f"{info_path}: expected a JSON object, got {type(info).__name__}")
    name = info.get("class")
    module = KNOWN_MODELS.get(name) if isinstance(name, str) else None
    if module is None:
        raise CheckpointError(f"{info_path}: unknown model class {name!r}")
    cls = getattr(importlib.import_module(module), name)
    require_safetensors(weights_path, what="model weights")  # refuses a pickle in disguise
    try:
        state = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{weights_path} is not a valid safetensors file ({exc})") from exc
    try:
        user_ids = np.load(root / "user_ids.npy", allow_pickle=False)
        item_ids = np.load(root / "item_ids.npy", allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:  # EOFError: an empty .npy (issue 8)
        raise CheckpointError(f"{root}: cannot read the id maps ({exc})") from exc
    try:  # a hand-edited model.json: wrong types or missing keys (reliability, issue 8)
        model = cls(**info.get("params", {}))
        model.user_ids_ = user_ids
        model.item_ids_ = item_ids
        model.rating_range_ = tuple(info["rating_range"])
        model.global_mean_ = float(info["global_mean"])
        model.columns_ = {str(k): str(v) for k, v in (info.get("columns") or {}).items()}
        try:
            model.train_ = CSRMatrix(
                indptr=state.pop("_train.indptr").numpy(),
                indices=state.pop("_train.indices").numpy(),
                values=state.pop("_train.values").numpy(),
                shape=(int(info["n_users"]), int(info["n_items"])),
            )
        except KeyError as exc:
            raise CheckpointError(f"{weights_path} lacks the training matrix ({exc})") from exc
        model.valid_ = _load_valid(state, model.train_.shape)
        model._load_fitted_meta(info.get("fitted", {}))
        model._load_state_dict(state)
        model._set_item_metadata(_load_model_items(root))
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
        raise CheckpointError(
            f"{info_path}: does not describe a valid {name} model ({type(exc).__name__}: {exc})"
        ) from None
    return model
