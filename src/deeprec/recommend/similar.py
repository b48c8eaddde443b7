"""Item-to-item similarity from a fitted model's learned item representations.

Which representation (one vector per item):

- DeepRec, user-based (items are the autoencoder's inputs and outputs): the item's row of
  the output layer, the weights through which its predicted rating is read off the last
  hidden layer (the analogue of matrix factorisation's item factors).
- DeepRec, item-based (items are the rows the autoencoder encodes): the code-layer
  encoding of the item's training rating vector (dropout off).
- BiasedMF: its item factors.

Similarity is the cosine of two vectors; the item itself is left out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from deeprec.errors import UnknownIdError
from deeprec.recommend.fitted import FittedModel, fitted_setting
from deeprec.recommend.ids import resolve
from deeprec.recommend.topn import check_k

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd


def item_vectors(model: FittedModel) -> np.ndarray:
    """(n_items, d) item representations (see module docstring)."""
    factors = getattr(model, "item_factors_", None)
    if factors is not None:
        return np.asarray(factors, dtype=np.float64)
    module = getattr(model, "module_", None)
    if module is None or not hasattr(module, "output_layer"):
        raise NotImplementedError(f"{type(model).__name__} has no learned item vectors")
    with torch.inference_mode():
        if fitted_setting(model, "orientation", "user") == "user":
            weight, _bias = module.output_layer()
            return weight.detach().double().numpy().copy()
        return _encode_rows(model, module)


def _encode_rows(model: FittedModel, module: Any, batch_size: int = 1024) -> np.ndarray:
    from deeprec.data.batching import row_batch

    rows = model.rows_  # type: ignore[attr-defined]  # items x users, as the model reads them
    was_training = module.training
    module.eval()
    try:
        codes = []
        for begin in range(0, rows.shape[0], batch_size):
            index = np.arange(begin, min(begin + batch_size, rows.shape[0]))
            x, _mask = row_batch(rows, index).dense()
            codes.append(module.encode(x).double())
    finally:
        module.train(was_training)
    return torch.cat(codes).numpy()


def similar_items(model: FittedModel, item: Any, k: int = 10) -> pd.DataFrame:
    """The k items with the highest cosine similarity to `item`: DataFrame (item, similarity)."""
    import pandas as pd

    model._check_fitted()
    k = check_k(k)
    index, known = resolve(model.item_ids_, [item])
    if not known[0]:
        raise UnknownIdError(
            f"unknown item {item!r}: not in the model's training data", field="item"
        )
    vectors = item_vectors(model)
    norms = np.linalg.norm(vectors, axis=1)
    norms[norms == 0] = 1.0
    unit = vectors / norms[:, None]
    target = int(index[0])
    similarity = unit @ unit[target]
    similarity[target] = -np.inf
    order = np.argsort(-similarity, kind="stable")[: min(k, model.n_items - 1)]
    return pd.DataFrame({"item": model.item_ids_[order], "similarity": similarity[order]})
