"""Export parity (ONNX, TorchScript) and the recommend/export CLI end to end."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from deeprec.recommend.export import export_model, parity_inputs, run_exported

from .conftest import cli_env


@pytest.mark.parametrize(("fmt", "suffix"), [("onnx", ".onnx"), ("torchscript", ".pt")])
def test_export_parity_on_random_users(fitted, tmp_path, fmt, suffix):
    if fmt == "onnx":
        pytest.importorskip("onnxruntime")
    out = tmp_path / f"model{suffix}"
    report = export_model(fitted, out, fmt, n_check=32, seed=4)
    assert report["parity_ok"] and report["parity_max_abs_diff"] <= 1e-5
    # independent check on other random users, a different batch size than the export's
    x = parity_inputs(fitted, n=17, seed=99).numpy()
    got = run_exported(out, fmt, x)
    users = np.sort(np.random.default_rng(99).choice(240, 17, replace=False))
    expected = fitted._score_users(users)
    # center="bias" (the default): the graph maps residuals to residuals; add mu + b_u + b_i
    got = got + fitted._baseline(users[:, None], np.arange(fitted.n_items)[None, :])
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    sidecar = json.loads((tmp_path / f"model{suffix}.json").read_text())
    assert sidecar["input_ids"] == fitted.item_ids_.tolist()
    assert sidecar["rating_range"] == list(fitted.rating_range_)


@pytest.mark.parametrize(("fmt", "suffix"), [("onnx", ".onnx"), ("torchscript", ".pt")])
def test_export_parity_with_row_scaling_and_rated_indicator(ratings_frame, tmp_path, fmt, suffix):
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
        seed=2,
    ).fit(ratings_frame)
    out = tmp_path / f"model{suffix}"
    report = export_model(model, out, fmt, n_check=32, seed=4)
    assert report["parity_ok"] and report["parity_max_abs_diff"] <= 1e-5
    x = parity_inputs(model, n=9, seed=5).numpy()
    with torch.inference_mode():
        expected = model.module_(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(run_exported(out, fmt, x), expected, atol=1e-5, rtol=0)


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
