"""Export parity (ONNX, TorchScript) and the recommend/export CLI end to end."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from deeprec.recommend.export import export_model, parity_inputs, parity_ratings, run_exported

from .conftest import cli_env

FORMATS = [("onnx", ".onnx"), ("torchscript", ".pt")]


def _fold_in_reference(model, x, rated):
    """Each row's predictions through the public new-user API (unclipped)."""
    rows = []
    for r in range(x.shape[0]):
        index = np.flatnonzero(rated[r])
        given = dict(zip(model.item_ids_[index].tolist(), x[r, index].tolist(), strict=True))
        result = model.predict_for(given, model.item_ids_.tolist(), clip=False)
        rows.append(result.frame["prediction"].to_numpy())
    return np.stack(rows)


@pytest.mark.parametrize(("fmt", "suffix"), FORMATS)
def test_export_of_a_centred_model_outputs_ratings(fitted, tmp_path, fmt, suffix):
    """center="bias" (the default): the graph takes ratings and a rated mask, centres the
    row itself and outputs ratings, equal to predict_for (a new user's fold-in)."""
    if fmt == "onnx":
        pytest.importorskip("onnxruntime")
    assert fitted.config().center == "bias"
    out = tmp_path / f"model{suffix}"
    report = export_model(fitted, out, fmt, n_check=32, seed=4)
    assert report["parity_ok"] and report["parity_max_abs_diff"] <= 1e-5
    assert report["inputs"] == ["ratings", "rated"]
    # independent check on other random users, a different batch size than the export's
    x, rated, users = parity_ratings(fitted, n=17, seed=99)
    got = run_exported(out, fmt, x, rated)
    np.testing.assert_allclose(got, _fold_in_reference(fitted, x, rated), atol=1e-4, rtol=0)
    # ratings, not residuals: on the scale, close to the known users' own predictions
    assert abs(float(got.mean()) - fitted.global_mean_) < 0.3
    known = fitted._score_users(users)
    assert float(np.sqrt(np.mean((got - known) ** 2))) < 0.1
    sidecar = json.loads((tmp_path / f"model{suffix}.json").read_text())
    assert sidecar["input_ids"] == fitted.item_ids_.tolist()
    assert sidecar["rating_range"] == list(fitted.rating_range_)
    assert sidecar["center"] == "bias" and sidecar["rated"] == "rated"


@pytest.mark.parametrize(("fmt", "suffix"), FORMATS)
def test_export_parity_of_an_uncentred_model(ratings_frame, tmp_path, fmt, suffix):
    if fmt == "onnx":
        pytest.importorskip("onnxruntime")
    from deeprec import DeepRec

    model = DeepRec(hidden=[16], epochs=2, center="none", standardize=False, seed=2)
    model.fit(ratings_frame)
    out = tmp_path / f"model{suffix}"
    report = export_model(model, out, fmt, n_check=32, seed=4)
    assert report["parity_ok"] and report["inputs"] == ["ratings"]
    x = parity_inputs(model, n=17, seed=99).numpy()
    users = np.sort(np.random.default_rng(99).choice(240, 17, replace=False))
    np.testing.assert_allclose(
        run_exported(out, fmt, x), model._score_users(users), atol=1e-5, rtol=0
    )


@pytest.mark.parametrize(("fmt", "suffix"), FORMATS)
def test_export_of_a_standardised_uncentred_model_outputs_ratings(
    ratings_frame, tmp_path, fmt, suffix
):
    """standardize without centring: the graph divides raw ratings by the output scale and
    multiplies its outputs back, so it maps ratings to ratings like the estimator."""
    if fmt == "onnx":
        pytest.importorskip("onnxruntime")
    from deeprec import DeepRec
    from deeprec.data.batching import row_batch

    model = DeepRec(hidden=[16], epochs=2, center="none", seed=2).fit(ratings_frame)
    assert model.output_scale != 1.0
    out = tmp_path / f"model{suffix}"
    report = export_model(model, out, fmt, n_check=32, seed=4)
    assert report["parity_ok"] and report["inputs"] == ["ratings"]
    users = np.arange(12)
    x, _ = row_batch(model.train_, users).dense()
    np.testing.assert_allclose(
        run_exported(out, fmt, x.numpy()), model._score_users(users), atol=1e-4, rtol=0
    )


@pytest.mark.parametrize(("fmt", "suffix"), FORMATS)
@pytest.mark.parametrize("center", ["none", "bias"])
def test_export_parity_with_row_scaling_and_rated_indicator(
    ratings_frame, tmp_path, fmt, suffix, center
):
    """The input options live in the module's forward, so exported graphs must carry them."""
    if fmt == "onnx":
        pytest.importorskip("onnxruntime")
    from deeprec import DeepRec

    model = DeepRec(
        hidden=[16],
        epochs=2,
        input_row_scale=3.0,
        rated_indicator=True,
        compute="reference",
        center=center,
        standardize=False,
        seed=2,
    ).fit(ratings_frame)
    out = tmp_path / f"model{suffix}"
    report = export_model(model, out, fmt, n_check=32, seed=4)
    assert report["parity_ok"] and report["parity_max_abs_diff"] <= 1e-5
    if center == "none":
        x = parity_inputs(model, n=9, seed=5).numpy()
        with torch.inference_mode():
            expected = model.module_(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(run_exported(out, fmt, x), expected, atol=1e-5, rtol=0)
    else:
        x, rated, _ = parity_ratings(model, n=9, seed=5)
        expected = _fold_in_reference(model, x, rated)
        np.testing.assert_allclose(run_exported(out, fmt, x, rated), expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize(("fmt", "suffix"), FORMATS)
def test_export_of_a_centred_item_based_model(ratings_frame, tmp_path, fmt, suffix):
    if fmt == "onnx":
        pytest.importorskip("onnxruntime")
    from deeprec import DeepRec

    model = DeepRec(hidden=[16], epochs=2, orientation="item", center="bias", seed=2)
    model.fit(ratings_frame)
    report = export_model(model, tmp_path / f"m{suffix}", fmt, n_check=16, seed=1)
    assert report["parity_ok"] and report["orientation"] == "item"
    x, rated, _ = parity_ratings(model, n=5, seed=3)
    got = run_exported(tmp_path / f"m{suffix}", fmt, x, rated)
    for r in range(5):
        index = np.flatnonzero(rated[r])
        given = dict(zip(model.user_ids_[index].tolist(), x[r, index].tolist(), strict=True))
        want = model.predict_for_item(given, model.user_ids_.tolist(), clip=False)
        np.testing.assert_allclose(got[r], want.frame["prediction"], atol=1e-4, rtol=0)


@pytest.mark.parametrize(("fmt", "suffix"), [("onnx", ".onnx"), ("torchscript", ".pt")])
def test_export_parity_with_kernelised_weights(ratings_frame, tmp_path, fmt, suffix):
    """weight_kernel_dim: the graph must hold the effective matrices W * K."""
    if fmt == "onnx":
        pytest.importorskip("onnxruntime")
    from deeprec import DeepRec

    model = DeepRec(hidden=[16], epochs=2, weight_kernel_dim=3, compute="reference", seed=2)
    model.fit(ratings_frame)
    with torch.no_grad():  # spread the kernel vectors so that K is far from 1
        for p in model.module_.kernel_vectors():
            p.normal_(0.0, 0.5)
    out = tmp_path / f"model{suffix}"
    report = export_model(model, out, fmt, n_check=16, seed=4)
    assert report["parity_ok"] and report["parity_max_abs_diff"] <= 1e-5


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "deeprec", *args],
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_recommend_user_ratings_all_and_export(run_dir, fitted, tmp_path):
    user = str(fitted.user_ids_[2])
    ratings = tmp_path / "me.csv"
    items = fitted.item_ids_[:4].tolist()
    ratings.write_text(
        "item,rating\n"
        + "".join(f"{i},{r}\n" for i, r in zip(items, [5, 4, 1, 2], strict=True))
        + "777777,3\n"
    )
    out = tmp_path / "all.parquet"
    onnx = tmp_path / "m.onnx"
    script = (
        "import sys; from deeprec.cli import main\n"
        "for argv in sys.argv[1:]:\n"
        "    try:\n"
        "        main(argv.split('|'))\n"
        "    except SystemExit as e:\n"
        "        print('EXIT', e.code)\n"
        "    print('@@@')\n"
    )
    calls = [
        f"recommend|--run|{run_dir}|--user|{user}|-k|4",
        f"recommend|--run|{run_dir}|--ratings|{ratings}|-k|3",
        f"recommend|--run|{run_dir}|--all|--out|{out}|-k|2",
        f"export|--run|{run_dir}|--format|onnx|--out|{onnx}",
        f"recommend|--run|{run_dir}|--user|nobody",
        f"recommend|--run|{run_dir}",
    ]
    proc = subprocess.run(
        [sys.executable, "-c", script, *calls],
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    outputs = proc.stdout.split("@@@\n")
    by_user = json.loads(outputs[0])
    assert [r["item"] for r in by_user["items"]] == fitted.recommend(int(user), 4)["item"].tolist()
    new = json.loads(outputs[1])
    assert new["unknown_rated"] == [777777] and new["n_ratings_used"] == 4
    assert "unknown to the model" in proc.stderr
    assert json.loads(outputs[2])["rows"] == 2 * fitted.n_users
    assert len(pd.read_parquet(out)) == 2 * fitted.n_users
    assert json.loads(outputs[3])["parity_ok"] is True
    assert "EXIT 2" in outputs[4] and "unknown user 'nobody'" in proc.stderr
    assert "EXIT 2" in outputs[5] and "exactly one of --user, --ratings or --all" in proc.stderr


def test_cli_serve_help_runs_as_a_module():
    result = run_cli("serve", "--help")
    assert result.returncode == 0 and "--port" in result.stdout
