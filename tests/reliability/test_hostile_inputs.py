"""Property-based tests (Hypothesis): readers and splits on generated malformed inputs.

Every run either prepares a dataset that loads back, or fails with deeprec's DataError whose
message names the place (the file, and line or field where known, or the option); in both
cases no temporary or partial output directory is left behind. Case counts: see
MAX_EXAMPLES (reported in docs/results/reliability.md).
"""

from __future__ import annotations

import datetime
import shutil
import tempfile
import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deeprec.data.dataset import PreparedDataset
from deeprec.data.prepare import prepare_dataset
from deeprec.data.splits import parse_split
from deeprec.errors import DataError, DataWarning

MAX_EXAMPLES = 120
SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,  # the same cases every run: CI failures reproduce
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

GOOD = {
    "csv": "user,item,rating,timestamp\n"
    + "".join(
        f"{u},{i},{(u * 7 + i) % 5 + 1},{1100000000 + 86400 * (u + i)}\n"
        for u in range(1, 9)
        for i in range(1, 6)
    ),
    "movielens": "".join(
        f"{u}\t{i}\t{(u + i) % 5 + 1}\t{880000000 + u * 1000 + i}\n"
        for u in range(1, 9)
        for i in range(1, 6)
    ),
    "netflix": "".join(
        f"{i}:\n"
        + "".join(f"{u},{(u + i) % 5 + 1},2005-0{1 + u % 9}-1{i % 9}\n" for u in range(1, 9))
        for i in range(1, 4)
    ),
}
FILE_NAMES = {"csv": "ratings.csv", "movielens": "u.data", "netflix": "combined_data_1.txt"}

# Pieces that break parsers: delimiters, quotes, signs, exponents, NaN/inf, separators of
# other formats, unicode, NUL, CR, very long numbers.
NASTY = st.sampled_from(
    [
        ",",
        "\t",
        ";",
        "::",
        '"',
        "'",
        "-",
        "+",
        "e9",
        "1e400",
        "nan",
        "inf",
        "-inf",
        ":",
        "\r",
        "\x00",
        "\ufeff",
        "é",
        "漢",
        " ",
        "",
        "\n",
        "99999999999999999999999",
        "0x1F",
        "1.5",
        "-3",
        "2005-02-30",
        "2005-13-01",
        "NULL",
        "#",
        "\\",
    ]
)


@st.composite
def mutated(draw, fmt: str) -> bytes:
    """A valid file of `fmt` with a few random edits (replace/insert/delete/truncate)."""
    lines = GOOD[fmt].splitlines(keepends=True)
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["replace", "insert", "delete", "splice", "truncate", "dup"]))
        if not lines:
            lines = [""]
        at = draw(st.integers(0, len(lines) - 1))
        if action == "replace":
            lines[at] = (
                draw(st.text(NASTY.example.__self__ if False else st.characters(), max_size=20))
                + "\n"
                if draw(st.booleans())
                else "".join(draw(st.lists(NASTY, max_size=6))) + "\n"
            )
        elif action == "insert":
            lines.insert(at, "".join(draw(st.lists(NASTY, max_size=6))) + "\n")
        elif action == "delete":
            del lines[at]
        elif action == "splice":
            line = lines[at]
            cut = draw(st.integers(0, len(line)))
            lines[at] = line[:cut] + draw(NASTY) + line[cut:]
        elif action == "truncate":
            lines = lines[: at + 1]
            lines[-1] = lines[-1][: draw(st.integers(0, len(lines[-1])))]
        else:
            lines.insert(at, lines[at])
    data = "".join(lines).encode("utf-8", errors="surrogatepass")
    if draw(st.integers(0, 9)) == 0:
        data = data[: draw(st.integers(0, len(data)))] + draw(st.binary(max_size=16))
    return data


def _names_a_place(err: DataError, path: Path, root: Path) -> bool:
    text = str(err)
    return (
        (err.path is not None and Path(err.path).name in text)
        or err.field is not None
        or str(root) in text
        or path.name in text
    )


def _check(fmt: str, data: bytes, split: str) -> str:
    root = Path(tempfile.mkdtemp(prefix="hostile-"))
    try:
        if fmt == "netflix":
            (root / "nf").mkdir()
            path = root / "nf" / FILE_NAMES[fmt]
        else:
            path = root / FILE_NAMES[fmt]
        path.write_bytes(data)
        out = root / "prepared"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DataWarning)
                prepare_dataset([path], fmt, split, out=out, seed=1)
        except DataError as err:
            assert _names_a_place(err, path, root), f"no place in: {err}"
            assert not out.exists(), "output left behind after an error"
            outcome = "error"
        else:
            PreparedDataset.load(out)  # a success must load back
            outcome = "ok"
        leftovers = [p.name for p in root.rglob(".*")]
        assert not leftovers, f"temporary files left: {leftovers}"
        return outcome
    finally:
        shutil.rmtree(root, ignore_errors=True)


OUTCOMES: dict[str, dict[str, int]] = {}


def _count(name: str, outcome: str) -> None:
    OUTCOMES.setdefault(name, {}).setdefault(outcome, 0)
    OUTCOMES[name][outcome] += 1


@pytest.mark.parametrize("fmt", ["csv", "movielens", "netflix"])
def test_malformed_files_fail_cleanly(fmt):
    split = "random:0.8,0.1,0.1"

    @SETTINGS
    @given(data=mutated(fmt))
    def run(data):
        _count(fmt, _check(fmt, data, split))

    run()
    assert sum(OUTCOMES[fmt].values()) >= MAX_EXAMPLES // 2
    assert OUTCOMES[fmt].get("error", 0) > 0  # the generator does produce broken files


def _good_parquet() -> bytes:
    import io

    import polars as pl

    buffer = io.BytesIO()
    pl.read_csv(GOOD["csv"].encode()).write_parquet(buffer)
    return buffer.getvalue()


@st.composite
def damaged_parquet(draw) -> bytes:
    data = bytearray(_good_parquet())
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data) - 1))]
    for _ in range(draw(st.integers(0 if len(data) < 8 else 1, 6))):
        if data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data)


@settings(SETTINGS, max_examples=60)
@given(data=damaged_parquet())
def test_damaged_parquet_fails_cleanly(data):
    FILE_NAMES["parquet"] = "ratings.parquet"
    _count("parquet", _check("parquet", data, "random:0.8,0.1,0.1"))


SPEC = st.one_of(
    st.text(max_size=30),
    st.builds(
        lambda kind, args: kind + ":" + ",".join(args),
        st.sampled_from(
            ["random", "time", "time-quantile", "column", "given", "netflix-3m", "RANDOM"]
        ),
        st.lists(
            st.one_of(NASTY, st.floats(allow_nan=True).map(str), st.dates().map(str)), max_size=4
        ),
    ),
    st.builds(
        lambda a, b: f"time:{a}:{b}", st.dates().map(str) | NASTY, st.dates().map(str) | NASTY
    ),
)


@SETTINGS
@given(spec=SPEC)
def test_split_specs_parse_or_fail_naming_the_option(spec):
    try:
        parse_split(spec)
    except DataError as err:
        assert err.field == "split" and "split" in str(err)
        _count("split-spec", "error")
    else:
        _count("split-spec", "ok")


# Near-valid specs around the good CSV's dates (2004-11-09 .. 2004-11-22): empty windows,
# tiny fractions, quantiles at the edges, a missing split column.
DAY = st.dates(min_value=datetime.date(2004, 11, 1), max_value=datetime.date(2004, 11, 30)).map(str)
NEAR_SPEC = st.one_of(
    st.builds(lambda a, b: f"time:{a}:{b}", DAY, DAY),
    st.builds(lambda a, b, c, d: f"time:{a}:{b}:{c}:{d}", DAY, DAY, DAY, DAY),
    st.floats(0.0, 1.0).map(lambda q: f"time-quantile:{q}"),
    st.tuples(st.floats(0.0, 1.0), st.floats(0.0, 1.0)).map(
        lambda t: f"random:{t[0]},{(1 - t[0]) * t[1]},{1 - t[0] - (1 - t[0]) * t[1]}"
    ),
    st.sampled_from(["column:split", "given", "netflix-3m", "random:1,0,0"]),
)


@settings(SETTINGS, max_examples=100)
@given(spec=st.one_of(SPEC, NEAR_SPEC, NEAR_SPEC))
def test_bad_split_on_a_good_file_leaves_nothing(spec):
    outcome = _check("csv", GOOD["csv"].encode(), spec)
    _count("split-on-file", outcome)


def test_report_counts():  # runs last in this file
    """Print how many cases ran (shown with -s; also copied into the results file)."""
    print({name: dict(v) for name, v in OUTCOMES.items()})
