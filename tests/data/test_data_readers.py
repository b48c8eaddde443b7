"""Readers on the real files in ../shared/data (skipped when absent) and on generated ones."""

from __future__ import annotations

import gzip
import lzma
import shutil

import numpy as np
import polars as pl
import pytest

from deeprec.data.readers import guess_format, read_ratings, resolve_files
from shared_data import shared_file

pytestmark = pytest.mark.realdata


def _read(path, fmt, **kw):
    return read_ratings(resolve_files([path], fmt), fmt, **kw)


def test_ml100k_counts():
    table = _read(shared_file("ml-100k", "u.data"), "movielens")
    assert table.height == 100_000
    assert table["user"].n_unique() == 943
    assert table["item"].n_unique() == 1_682
    assert table.schema == {
        "user": pl.Int64,
        "item": pl.Int64,
        "rating": pl.Float32,
        "timestamp": pl.Int64,
    }
    assert table["timestamp"].min() == 874724710 and table["timestamp"].max() == 893286638
    counts = table["rating"].value_counts().sort("rating")["count"].to_list()
    assert counts == [6110, 11370, 27145, 34174, 21201]


def test_ml100k_folder_and_guess():
    folder = shared_file("ml-100k")
    assert guess_format([folder / "u1.base"]) == "movielens"
    assert _read(folder, "movielens").height == 100_000


def test_u1_base_and_test():
    base = _read(shared_file("ml-100k", "u1.base"), "movielens")
    test = _read(shared_file("ml-100k", "u1.test"), "movielens")
    assert (base.height, test.height) == (80_000, 20_000)


def test_ml1m_subset_gzip():
    table = _read(shared_file("ml-1m-users1-2999", "ratings.dat.gz"), "movielens")
    assert table.height == 487_650
    assert table["user"].n_unique() == 2_999
    assert table["item"].n_unique() == 3_615
    assert table.row(0) == (1, 1193, 5.0, 978300760)
    means = table.group_by("item").agg(pl.len(), pl.col("rating").mean()).sort("item").head(3)
    assert means["len"].to_list() == [993, 332, 299]
    assert means["rating"][0] == pytest.approx(4.145015105740181, abs=1e-6)


def test_ml_latest_small_crlf_half_stars():
    path = shared_file("ml-latest-small", "ratings.csv")
    assert b"\r\n" in path.read_bytes()[:100]
    for fmt in ("movielens", "csv"):
        table = _read(path, fmt)
        assert table.height == 100_836
        assert table["user"].n_unique() == 610 and table["item"].n_unique() == 9_724
        values = table["rating"].value_counts().sort("rating")
        assert values["rating"].to_list() == [0.5 * k for k in range(1, 11)]
        assert values["count"][0] == 1370


def test_netflix_both_layouts_identical(tmp_path):
    folder = shared_file("netflix-prize-samples", "training_set")
    per_file = _read(folder.parent, "netflix")
    assert per_file.height == 20_352 and per_file["user"].n_unique() == 19_519
    counts = per_file.group_by("item").len().sort("item")["len"].to_list()
    assert counts == [547, 145, 2012, 142, 1140, 1019, 93, 14910, 95, 249]
    # combined_data layout: several movie blocks per file, split over two files (one gzipped).
    files = sorted(folder.glob("mv_*.txt"))
    (tmp_path / "combined_data_1.txt").write_bytes(b"".join(p.read_bytes() for p in files[:6]))
    with gzip.open(tmp_path / "combined_data_2.txt.gz", "wb") as handle:
        handle.write(b"".join(p.read_bytes() for p in files[6:]))
    combined = _read(tmp_path, "netflix")
    assert combined.equals(per_file)
    assert per_file["timestamp"].min() == 968457600  # 2000-09-09 UTC
    assert per_file["timestamp"].max() == 1135987200  # 2005-12-31 UTC


def test_netflix_small_chunks_continue_movies(tmp_path, monkeypatch):
    """A combined file cut into many chunks keeps each row's movie (carried across chunks)."""
    from deeprec.data.readers import _io

    folder = shared_file("netflix-prize-samples", "training_set")
    expected = _read(folder.parent, "netflix")
    files = sorted(folder.glob("mv_*.txt"))
    (tmp_path / "combined_data_1.txt").write_bytes(b"".join(p.read_bytes() for p in files))
    monkeypatch.setattr(_io, "CHUNK_BYTES", 4096)
    from deeprec.data.readers import netflix

    chunks = list(_io.iter_chunks([tmp_path / "combined_data_1.txt"]))
    assert len(chunks) > 50
    table = netflix.read_netflix([tmp_path / "combined_data_1.txt"])
    assert table.equals(expected)


def test_netflix_csv_sample_with_dates():
    path = shared_file("netflix-prize-samples", "netflix-user-ratings-10k.csv")
    table = _read(path, "csv")
    assert table.height == 10_000
    assert table["user"].n_unique() == 9_687 and table["item"].n_unique() == 3_451
    row = table.filter((pl.col("item") == 8) & (pl.col("user") == 2347415))
    assert row.height == 1
    assert row["timestamp"][0] == 1115942400  # 2005-05-13 UTC, as in mv_0000008.txt
    mv = _read(shared_file("netflix-prize-samples", "training_set", "mv_0000008.txt"), "netflix")
    match = mv.filter(pl.col("user") == 2347415)
    assert match["timestamp"][0] == row["timestamp"][0] and match["rating"][0] == 1.0


def test_xz_and_explicit_columns(tmp_path):
    source = shared_file("ml-100k", "u.data")
    xz = tmp_path / "u.data.xz"
    with lzma.open(xz, "wb") as handle:
        handle.write(source.read_bytes())
    assert _read(xz, "movielens").equals(_read(source, "movielens"))
    # The UW subset: MovieID,UserID,Rating without a header or dates, CRLF.
    uw = shared_file("netflix-prize-samples", "uw-cse-subset", "TestingRatings.txt")
    table = _read(uw, "csv", columns="item=0,user=1,rating=2")
    assert table.height == 100_478 and "timestamp" not in table.columns
    assert table["user"].n_unique() == 27_555 and table["item"].n_unique() == 1_701


def test_movietweetings_keeps_zero_padded_ids():
    path = shared_file("movietweetings-100k", "ratings.dat")
    table = _read(path, "csv", rating_scale=(0, 10))
    assert table.height == 100_000 and table["item"].n_unique() == 10_506
    assert table["item"].dtype == pl.String and table["item"].str.len_chars().min() == 7
    assert table["rating"].min() == 0.0  # 0 is a rating


def test_generic_tsv_parquet_and_names(tmp_path):
    frame = pl.DataFrame(
        {
            "uid": ["a", "b", "a"],
            "movie": [10, 20, 20],
            "stars": [4.5, 3.0, 1.0],
            "when": ["2020-01-02", "2020-01-03", "2020-02-01"],
        }
    )
    frame.write_csv(tmp_path / "r.tsv", separator="\t")
    frame.write_parquet(tmp_path / "r.parquet")
    spec = "user=uid,item=movie,rating=stars,timestamp=when"
    tsv = _read(tmp_path / "r.tsv", "csv", columns=spec)
    parquet = _read(tmp_path / "r.parquet", "parquet", columns=spec)
    assert tsv.equals(parquet)
    assert tsv["user"].to_list() == ["a", "b", "a"]
    assert tsv["timestamp"][0] == 1577923200  # 2020-01-02 UTC
    shutil.copy(tmp_path / "r.tsv", tmp_path / "plain.txt")
    assert np.array_equal(
        _read(tmp_path / "plain.txt", "csv", columns=spec)["rating"], tsv["rating"]
    )
