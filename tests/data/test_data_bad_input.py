"""Bad input: each error names the file and line (or field), and nothing is left on disk."""

from __future__ import annotations

import gzip

import pytest

from deeprec.data.prepare import prepare_dataset
from deeprec.errors import DataError

GOOD = "1:\n1,3,2005-01-01\n2,4,2005-12-02\n"


def _tree(tmp_path, files: dict[str, str]):
    folder = tmp_path / "nf" / "training_set"
    folder.mkdir(parents=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return tmp_path / "nf"


@pytest.mark.parametrize(
    ("second", "line", "field", "message"),
    [
        ("2:\n1,3,2005-01-01\n3,4\n", 3, None, "3 comma-separated fields"),
        ("2:\n1,3,2005-01-01\n2,3,2005-13-01\n", 3, "Date", "YYYY-MM-DD"),
        ("2:\n1,3,2005-01-01\n1,3,2005-02-01\n2,x,2005-12-01\n", 4, "Rating", "not a number"),
        ("2:\n1,3,2005-01-01\n2,6,2005-12-01\n", 3, "Rating", "outside the scale 1..5"),
        ("2:\nabc,3,2005-01-01\n", 2, "CustomerID", "not an integer"),
        ("1,3,2005-01-01\n", 1, "MovieID", "does not start"),
        ("2:\n1,3,2005-01-01\n\n", 3, None, "3 comma-separated fields"),
        ("2:\n1,3,2005-01-01\nx2:\n", 3, "MovieID", "MovieID:"),
        ("2:\n1,3,2005-01-01,7\n", 2, None, "3 comma-separated fields"),
    ],
)
def test_netflix_errors_name_file_line_field(tmp_path, second, line, field, message):
    root = _tree(tmp_path, {"mv_0000001.txt": GOOD, "mv_0000002.txt": second})
    with pytest.raises(DataError, match=message) as info:
        prepare_dataset([root], "netflix", "random:0.8,0.1,0.1", out=tmp_path / "out")
    err = info.value
    assert err.path.endswith("mv_0000002.txt") and err.line == line and err.field == field
    assert f"mv_0000002.txt:{line}" in str(err)
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_combined_layout_error_line_in_gzip(tmp_path):
    text = GOOD + "2:\n" + "".join(f"{u},3,2005-01-01\n" for u in range(1, 50)) + "7,3,2005-02-30\n"
    with gzip.open(tmp_path / "combined_data_1.txt.gz", "wt") as handle:
        handle.write(text)
    with pytest.raises(DataError) as info:
        prepare_dataset([tmp_path], "netflix", "netflix-full")
    assert info.value.line == 54 and info.value.field == "Date"


@pytest.mark.parametrize(
    ("name", "text", "fmt", "line", "field"),
    [
        ("u.data", "1\t1\t3\t5\n2\t1\tfoo\t5\n", "movielens", 2, "rating"),
        ("ratings.dat", "1::1::3::5\n1::2::3\n", "movielens", 2, "timestamp"),
        ("ratings.dat", "1::1::3::5\n1::2::9::7\n", "movielens", 2, "rating"),
        ("r.csv", "user,item,rating\n1,1,3\n2,1,4\n3,,4\n", "csv", 4, "item"),
        (
            "r.csv",
            "u,i,r,when\n1,1,3,2005-01-01\n2,1,4,yesterday\n4,3,x,2005-01-01\n",
            "csv",
            3,
            "when",
        ),
        ("r.csv", "user,item,rating\n1,1,3\n2,1,inf\n", "csv", 3, "rating"),
    ],
)
def test_text_errors_name_line_and_column(tmp_path, name, text, fmt, line, field):
    (tmp_path / name).write_text(text)
    columns = "user=u,item=i,rating=r,timestamp=when" if text.startswith("u,") else None
    with pytest.raises(DataError) as info:
        prepare_dataset([tmp_path / name], fmt, "random:0.8,0.1,0.1", columns=columns)
    assert (info.value.line, info.value.field) == (line, field)
    assert info.value.path.endswith(name)


def test_empty_and_missing_inputs(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="empty"):
        prepare_dataset([tmp_path / "empty.csv"], "csv", "random:0.8,0.1,0.1")
    (tmp_path / "header.csv").write_text("user,item,rating\n")
    with pytest.raises(DataError, match="no ratings"):
        prepare_dataset([tmp_path / "header.csv"], "csv", "random:0.8,0.1,0.1")
    with pytest.raises(DataError, match="not found"):
        prepare_dataset([tmp_path / "nope.csv"], "csv", "random:0.8,0.1,0.1")
    (tmp_path / "folder").mkdir()
    with pytest.raises(DataError, match="no Netflix files"):
        prepare_dataset([tmp_path / "folder"], "netflix", "netflix-full")
    with pytest.raises(DataError, match="cannot tell which column"):
        (tmp_path / "odd.csv").write_text("a,b,c\n1,2,3\n")
        prepare_dataset([tmp_path / "odd.csv"], "csv", "random:0.8,0.1,0.1")


def test_unknown_split_fails_before_reading(tmp_path):
    with pytest.raises(DataError, match="unknown split 'netflix-2y'"):
        prepare_dataset([tmp_path / "does-not-exist"], "netflix", "netflix-2y")


def test_existing_output_needs_overwrite(tmp_path):
    (tmp_path / "r.csv").write_text(
        "user,item,rating\n" + "".join(f"{u},{u % 3},3\n" for u in range(60))
    )
    (tmp_path / "out").mkdir()
    with pytest.raises(FileExistsError):
        prepare_dataset([tmp_path / "r.csv"], "csv", "random:0.5,0.25,0.25", out=tmp_path / "out")
