"""Item metadata: readers of the formats that ship titles, prepare, the model, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from deeprec import DeepRec, load_model
from deeprec.data.dataset import PreparedDataset
from deeprec.data.items import align, find_item_file, read_items
from deeprec.data.prepare import prepare_dataset
from deeprec.errors import DataError
from deeprec.recommend.honesty import low_rank_ratings

SRC = Path(__file__).resolve().parents[2] / "src"
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from shared_data import shared_file  # noqa: E402


def _flags(*on: int) -> str:
    return "|".join("1" if i in on else "0" for i in range(19))


def test_u_item_with_genre_names(tmp_path):
    (tmp_path / "u.genre").write_text(
        "".join(f"G{i}|{i}\n" for i in range(19)) + "\n", encoding="latin-1"
    )
    (tmp_path / "u.item").write_bytes(
        (
            f"1|Toy Story (1995)|01-Jan-1995||http://x|{_flags(3, 4)}\n"
            f"2|Café Society (1995)|01-Jan-1995||http://y|{_flags()}\n"
        ).encode("latin-1")
    )
    table = read_items(tmp_path / "u.item")
    assert table.rows() == [("1", "Toy Story (1995)", "G3|G4"), ("2", "Café Society (1995)", None)]


def test_movies_dat_latin1_and_utf8_with_leading_zeros(tmp_path):
    ml1m = tmp_path / "ml1m"
    ml1m.mkdir()
    (ml1m / "movies.dat").write_bytes(
        "1::Toy Story (1995)::Animation|Comedy\n2::Jalla! Jalla! (2000)::Comedy\n".replace(
            "Jalla! Jalla!", "Jallà"
        ).encode("latin-1")
    )
    assert read_items(ml1m / "movies.dat").rows() == [
        ("1", "Toy Story (1995)", "Animation|Comedy"),
        ("2", "Jallà (2000)", "Comedy"),
    ]
    tweets = tmp_path / "tweets"
    tweets.mkdir()
    (tweets / "movies.dat").write_text(
        "0002844::Fantômas (1913)::Crime|Drama\n0000008::Edison Kinetoscopic (1894)::\n",
        encoding="utf-8",
    )
    table = read_items(tweets / "movies.dat")
    assert table.row(0) == ("0002844", "Fantômas (1913)", "Crime|Drama")
    assert table.row(1)[2] is None
    aligned = align(table, np.array([8, 2844, 99], dtype=np.int64))  # integer ids: 0000008 is 8
    assert aligned.rows() == [
        (8, "Edison Kinetoscopic (1894)", None),
        (2844, "Fantômas (1913)", "Crime|Drama"),
    ]


def test_movies_csv_quoted_titles_crlf(tmp_path):
    path = tmp_path / "movies.csv"
    path.write_bytes(
        b"movieId,title,genres\r\n1,Toy Story (1995),Adventure|Animation\r\n"
        b'11,"American President, The (1995)",Comedy|Drama\r\n'
        b"99,Nothing (2000),(no genres listed)\r\n"
    )
    assert read_items(path).rows() == [
        ("1", "Toy Story (1995)", "Adventure|Animation"),
        ("11", "American President, The (1995)", "Comedy|Drama"),
        ("99", "Nothing (2000)", None),
    ]


def test_movies_csv_without_genres_column(tmp_path):
    path = tmp_path / "movies.csv"
    path.write_text("movieId,title\n5,Five\n")
    assert read_items(path).rows() == [("5", "Five", None)]


def test_netflix_titles_with_commas_and_null_year(tmp_path):
    path = tmp_path / "movie_titles.txt"
    path.write_bytes(b"1,2003,Dinosaur Planet\n2,NULL,Hello, Goodbye, Again\n")
    assert read_items(path).rows() == [
        ("1", "Dinosaur Planet (2003)", None),
        ("2", "Hello, Goodbye, Again", None),
    ]


def test_any_csv_with_columns(tmp_path):
    path = tmp_path / "catalogue.tsv"
    path.write_text("sku\tname\tkind\nA1\tRed shoe\tshoes|red\nB2\tBlue hat\t\n")
    table = read_items(path, "item=sku,title=name,genres=kind")
    assert table.rows() == [("A1", "Red shoe", "shoes|red"), ("B2", "Blue hat", None)]
    positional = tmp_path / "plain.csv"
    positional.write_text("7,Seven\n8,Eight\n")
    assert read_items(positional, "item=0,title=1").rows() == [
        ("7", "Seven", None),
        ("8", "Eight", None),
    ]


@pytest.mark.parametrize(
    ("name", "content", "line", "words"),
    [
        ("u.item", "1|Toy Story|x||u|0|1\n", 1, "genre flags"),
        ("movies.dat", "1::A::B\n2 only one field\n", 2, "id::title::genres"),
        ("movie_titles.txt", "1,2003,A\nx,2004,B\n", 2, "MovieID,Year,Title"),
        ("movies.csv", "movieId,title,genres\n1,A,B\n1,A again,B\n", 3, "listed twice"),
        ("movies.csv", "id,name\n1,A\n", 1, "no column 'movieId'"),
    ],
)
def test_bad_metadata_names_file_and_line(tmp_path, name, content, line, words):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DataError) as err:
        read_items(path)
    message = str(err.value)
    assert f"{path}:{line}" in message and words in message and "\n" not in message


def _write_u_data(folder: Path, n_users: int = 60, n_items: int = 30) -> None:
    frame = low_rank_ratings(n_users, n_items, density=0.4, seed=5)
    lines = [
        f"{u}\t{i}\t{int(r)}\t{880000000 + k}"
        for k, (u, i, r) in enumerate(
            zip(frame["user"], frame["item"], frame["rating"], strict=True)
        )
    ]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "u.data").write_text("\n".join(lines) + "\n")
    (folder / "u.item").write_text(
        "".join(
            f"{i}|Movie number {i} ({1990 + i % 10})|d||u|{_flags(i % 19)}\n"
            for i in range(1, n_items + 1)
        )
    )


def test_prepare_finds_titles_and_they_travel_with_the_model(tmp_path):
    raw = tmp_path / "raw"
    _write_u_data(raw)
    dataset = prepare_dataset([raw / "u.data"], "movielens", "random:0.8,0.1,0.1", tmp_path / "ds")
    assert dataset.meta["item_metadata"]["items_with_title"] == dataset.n_items
    loaded = PreparedDataset.load(tmp_path / "ds")
    assert (tmp_path / "ds" / "items.parquet").is_file()
    assert loaded.items.get_column("item").to_list() == loaded.item_ids.tolist()
    model = DeepRec(hidden=[16], epochs=2, batch_size=16, seed=0).fit(loaded)
    top = model.recommend(1, k=5)
    assert list(top.columns) == ["item", "title", "score", "prediction"]
    assert all(
        t == f"Movie number {i} ({1990 + i % 10})"
        for i, t in zip(top["item"], top["title"], strict=True)
    )
    similar = model.similar_items(3, k=4)
    assert list(similar.columns) == ["item", "title", "similarity"]
    assert model.search_items("NUMBER 13")["item"].tolist() == [13]  # every word, any case
    popular = model.search_items("", limit=5)
    assert len(popular) == 5 and popular["n_ratings"].is_monotonic_decreasing
    model.save(tmp_path / "model")
    assert (tmp_path / "model" / "items.parquet").is_file()
    again = load_model(tmp_path / "model")
    assert again.item_titles([3, 999]) == ["Movie number 3 (1993)", None]
    assert again.recommend_for({1: 5, 2: 4}, k=3).frame.columns.tolist()[:2] == ["item", "title"]
    # without metadata nothing changes
    bare = prepare_dataset([raw / "u.data"], "movielens", "random:0.8,0.1,0.1", items=False)
    assert bare.items is None and "item_metadata" not in bare.meta
    plain = DeepRec(hidden=[8], epochs=1, seed=0).fit(bare)
    assert "title" not in plain.recommend(1, k=3).columns


def test_items_file_with_columns_and_unrelated_ids(tmp_path):
    raw = tmp_path / "raw"
    _write_u_data(raw)
    (raw / "u.item").unlink()
    catalogue = tmp_path / "catalogue.csv"
    catalogue.write_text(
        "code,label\n" + "".join(f"{i},Thing {i}\n" for i in range(1, 11)) + "x,ignored\n"
    )
    dataset = prepare_dataset(
        [raw / "u.data"],
        "movielens",
        "random:0.8,0.1,0.1",
        items=catalogue,
        item_columns="item=code,title=label",
    )
    assert dataset.items.height == 10 and dataset.meta["item_metadata"]["rows"] == 11


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "deeprec", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_cli_prepare_bad_items_is_one_line_and_predict_has_titles(tmp_path):
    raw = tmp_path / "raw"
    _write_u_data(raw)
    bad = tmp_path / "bad.csv"
    bad.write_text("code,label\n1,One\n,empty\n")
    result = _cli(
        "prepare",
        str(raw / "u.data"),
        "--out",
        str(tmp_path / "x"),
        "--items",
        str(bad),
        "--item-columns",
        "item=code,title=label",
    )
    assert result.returncode == 2
    assert f"{bad}:3" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()
    result = _cli("prepare", str(raw), "--format", "movielens", "--out", str(tmp_path / "ds"))
    assert result.returncode == 0, result.stderr
    assert "item titles: 30 of 30 items" in result.stdout
    run = tmp_path / "run"
    result = _cli(
        "train",
        "--data",
        str(tmp_path / "ds"),
        "--out",
        str(run),
        "--config",
        "quickstart",
        "--set",
        "epochs=1",
        "-q",
    )
    assert result.returncode == 0, result.stderr
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("user,item\n1,2\n1,999\n")
    result = _cli(
        "predict", "--run", str(run), "--pairs", str(pairs), "--out", str(tmp_path / "p.csv")
    )
    assert result.returncode == 0, result.stderr
    out = pl.read_csv(tmp_path / "p.csv")
    assert out.columns[:3] == ["user", "item", "title"]
    assert out.get_column("title").to_list() == ["Movie number 2 (1992)", None]
    result = _cli("recommend", "--run", str(run), "--user", "1", "-k", "3")
    assert result.returncode == 0, result.stderr
    assert all(
        row["title"].startswith("Movie number") for row in json.loads(result.stdout)["items"]
    )


def test_find_item_file(tmp_path):
    assert find_item_file([tmp_path]) is None
    (tmp_path / "movies.csv").write_text("movieId,title\n")
    assert find_item_file([tmp_path / "ratings.csv"]) == tmp_path / "movies.csv"


@pytest.mark.realdata
@pytest.mark.parametrize(
    ("parts", "n", "example"),
    [
        (("ml-100k", "u.item"), 1682, ("50", "Star Wars (1977)")),
        (("ml-1m-users1-2999", "movies.dat"), 3883, ("1", "Toy Story (1995)")),
        (("ml-latest-small", "movies.csv"), 9742, ("11", "American President, The (1995)")),
        (("netflix-prize-samples", "movie_titles.txt"), 17770, ("1", "Dinosaur Planet (2003)")),
        (
            ("movietweetings-100k", "movies.dat"),
            10506,
            ("0002844", "Fantômas - À l'ombre de la guillotine (1913)"),
        ),
    ],
)
def test_real_metadata_files(parts, n, example):
    table = read_items(shared_file(*parts))
    assert table.height == n
    row = table.filter(pl.col("item") == example[0]).row(0)
    assert row[:2] == example


@pytest.mark.realdata
def test_real_ml100k_prepare_keeps_every_title(tmp_path):
    base = shared_file("ml-100k", "u1.base")
    dataset = prepare_dataset([base, base.with_name("u1.test")], "movielens", "given")
    assert dataset.meta["item_metadata"]["items_with_title"] == dataset.n_items == 1650
    titles = dict(
        zip(dataset.items["item"].to_list(), dataset.items["title"].to_list(), strict=True)
    )
    assert titles[50] == "Star Wars (1977)"
