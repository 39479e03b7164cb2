"""Property-based tests of every CSV/TSV reader: whatever the bytes, a list of rows or one BadInput line (exit 2).

Each reader gets random cell edits, random bytes, extra and missing columns, a UTF-8 BOM and CRLF line ends
(2,000 cases each), and every truncation of a small file of its kind. Anything but a result or a W2vprofError with
exit status 2 (a ZeroDivisionError, a KeyError, a UnicodeDecodeError...) fails the test.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from w2vprof.devices.profiles import load_profiles
from w2vprof.errors import W2vprofError
from w2vprof.fl.records import (
    CLIENT_COLUMNS,
    ROUND_COLUMNS,
    ClientRoundRecord,
    RoundRecord,
    read_clients_csv,
    read_rounds_csv,
)
from w2vprof.records import read_layers_csv, read_results_csv, rows_to_csv_text
from w2vprof.report.build import load_inputs
from w2vprof.sweep.writer import load_existing
from w2vprof.workload.manifest import read_manifest

DATA = Path(__file__).parent / "data"
# CI runs the same cases every time (derandomize), so a merge is never refused by a case nobody has seen before;
# W2VPROF_FUZZ=explore draws new cases on each run: run it when changing a reader, and keep what it finds as a test
EXPLORE = os.environ.get("W2VPROF_FUZZ") == "explore"
CASES = settings(
    max_examples=2000,
    derandomize=not EXPLORE,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)  # no_fsync holds for all cases


def _head(path: Path, lines: int) -> str:
    return "".join(path.read_text().splitlines(keepends=True)[:lines])


ROUNDS = [
    RoundRecord(round=0, aggregation="fedavg", validation_loss=4.1, validation_utterances=8),
    RoundRecord(
        round=1,
        aggregation="fedavg",
        participants=2,
        train_loss=3.9,
        validation_loss=3.5,
        round_sec=12.5,
        payload_bytes=1000,
    ),
]
CLIENTS = [
    ClientRoundRecord(
        round=1, client="a", partition_id=0, client_sec=2.5, examples=8, peak_rss_bytes=10**9, aggregation_weight=0.5
    ),
    ClientRoundRecord(round=1, client="b", status="error", error="boom"),
]
PROFILES = (
    "name,class,memory_gb,unified_memory,peak_fp32_tflops,peak_fp16_tflops,mixed_precision,source\n"
    "Board,single-board,8,true,0.1,,false,vendor\n"
    'GPU,server GPU,48,false,37.4,149.7,true,"a, b"\n'
)
MANIFEST = 'client_id\tpath\tsentence\tup_votes\nabc\tone.wav\tHello there.\t2\ndef\ttwo.wav\tSay "hi".\t0\n'
SAMPLES: dict[str, tuple[str, str]] = {  # reader -> (small file of its kind, cell separator)
    "results": (_head(DATA / "small.csv", 3), ","),
    "resume": (_head(DATA / "small.csv", 2), ","),
    "layers": (_head(DATA / "small.layers" / "base_b4_s1.csv", 3), ","),
    "rounds": (rows_to_csv_text(ROUNDS, ROUND_COLUMNS), ","),
    "clients": (rows_to_csv_text(CLIENTS, CLIENT_COLUMNS), ","),
    "summary": (_head(DATA / "summary_tiny.csv", 3), ","),
    "profiles": (PROFILES, ","),
    "manifest": (MANIFEST, "\t"),
}


def _read(kind: str, path: Path) -> object:
    """The reader of `kind` on `path`; any W2vprofError is checked to be exit status 2 here."""
    readers: dict[str, Callable[[Path], object]] = {
        "results": read_results_csv,
        "resume": load_existing,
        "layers": read_layers_csv,
        "rounds": read_rounds_csv,
        "clients": read_clients_csv,
        "summary": lambda p: load_inputs([p]),  # the report's reader of `summary --format csv` files (and results)
        "profiles": load_profiles,
        "manifest": read_manifest,
    }
    try:
        return readers[kind](path)
    except W2vprofError as exc:
        message = str(exc)
        assert exc.exit_code == 2, message
        assert message and "\n" not in message and "Traceback" not in message
        return exc


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "input.csv"


@pytest.fixture()
def no_fsync(monkeypatch):
    """The resume reader repairs a torn file with a synced atomic write; syncing adds nothing to what is tested."""
    monkeypatch.setattr("os.fsync", lambda fd: None)


# --- how a file gets broken --------------------------------------------------------------------------------------

ODD_CELLS = st.sampled_from(
    [
        "",
        "0",
        "-1",
        "-0.0",
        "2.5",
        "1e400",
        "nan",
        "NaN",
        "inf",
        "-inf",
        "true",
        "yes",
        "x",
        '"',
        '""',
        ",",
        "\t",
        "\n",
        "\r",
        "\x00",
        "\ufeff",
        "é",
        "1" * 30,
        "1_000",
        " 7 ",
    ]
)
CELLS = st.one_of(ODD_CELLS, st.text(max_size=10))


def _split(text: str, sep: str) -> list[list[str]]:
    quoting = csv.QUOTE_NONE if sep == "\t" else csv.QUOTE_MINIMAL
    return [row for row in csv.reader(io.StringIO(text), delimiter=sep, quoting=quoting)]


def _join(rows: list[list[str]], sep: str) -> str:
    buffer = io.StringIO()
    if sep == "\t":
        writer = csv.writer(buffer, delimiter=sep, quoting=csv.QUOTE_NONE, escapechar="\\", lineterminator="\n")
    else:
        writer = csv.writer(buffer, lineterminator="\n")
    writer.writerows(rows)
    return buffer.getvalue()


@st.composite
def cell_edits(draw, text: str, sep: str) -> bytes:
    rows = _split(text, sep)
    for _ in range(draw(st.integers(1, 3))):
        row = draw(st.integers(0, len(rows) - 1))
        column = draw(st.integers(0, len(rows[row]) - 1))
        rows[row][column] = draw(CELLS)
    return _join(rows, sep).encode("utf-8")


@st.composite
def column_changes(draw, text: str, sep: str) -> bytes:
    rows = _split(text, sep)
    column = draw(st.integers(0, len(rows[0]) - 1))
    change = draw(
        st.sampled_from(
            [
                "drop",
                "drop header only",
                "drop a row's cell",
                "add",
                "add to header only",
                "add to a row",
                "rename",
                "duplicate",
            ]
        )
    )
    if change == "drop":
        rows = [r[:column] + r[column + 1 :] for r in rows]
    elif change == "drop header only":
        rows[0] = rows[0][:column] + rows[0][column + 1 :]
    elif change == "drop a row's cell":
        row = draw(st.integers(1, len(rows) - 1))
        rows[row] = rows[row][:column] + rows[row][column + 1 :]
    elif change == "add":
        rows = [r[:column] + [draw(CELLS) if i else "extra"] + r[column:] for i, r in enumerate(rows)]
    elif change == "add to header only":
        rows[0] = rows[0] + ["extra"]
    elif change == "add to a row":
        rows[-1] = rows[-1] + [draw(CELLS)]
    elif change == "rename":
        rows[0][column] = draw(CELLS)
    else:
        rows[0][draw(st.integers(0, len(rows[0]) - 1))] = rows[0][column]
    return _join(rows, sep).encode("utf-8")


@st.composite
def byte_damage(draw, text: str, sep: str) -> bytes:
    data = bytearray(text.encode("utf-8"))
    kind = draw(st.sampled_from(["random file", "overwrite", "insert", "cut"]))
    if kind == "random file":
        return draw(st.binary(max_size=200))
    at = draw(st.integers(0, len(data)))
    if kind == "overwrite":
        chunk = draw(st.binary(min_size=1, max_size=8))
        data[at : at + len(chunk)] = chunk
    elif kind == "insert":
        data[at:at] = draw(st.binary(min_size=1, max_size=8))
    else:
        del data[at : at + draw(st.integers(1, 40))]
    return bytes(data)


def _finish(case: tuple[bytes, bool, bool]) -> bytes:
    data, crlf, bom = case
    data = data.replace(b"\n", b"\r\n") if crlf else data
    return b"\xef\xbb\xbf" + data if bom else data


def broken(kind: str) -> st.SearchStrategy[bytes]:
    """A sample of `kind` with its cells, columns or bytes damaged (or intact), maybe with CRLF and a BOM."""
    text, sep = SAMPLES[kind]
    damage = st.one_of(
        cell_edits(text, sep), column_changes(text, sep), byte_damage(text, sep), st.just(text.encode("utf-8"))
    )
    return st.tuples(damage, st.booleans(), st.booleans()).map(_finish)


# --- the properties ----------------------------------------------------------------------------------------------


def _write_new(path: Path, data: bytes) -> None:
    """`data` as a new file at `path`. Not written over the last case's file: ext4 flushes a file truncated to zero
    when it is closed (its replace-via-truncate guard), about 4 ms a case here, which was most of the fuzz time."""
    path.unlink(missing_ok=True)
    path.write_bytes(data)


def _check(kind: str, path: Path, data: bytes) -> None:
    _write_new(path, data)
    result = _read(kind, path)
    assert isinstance(result, (list, W2vprofError)) or kind == "summary" or kind == "manifest", type(result)


def _fuzz(kind: str, cases: int = 2000):
    strategy = broken(kind)

    @settings(CASES, max_examples=cases)
    @given(data=strategy)
    def test(scratch, no_fsync, data):
        _check(kind, scratch, data)

    test.__name__ = f"test_{kind}_reader_never_raises_anything_but_bad_input"
    return test


test_results_reader = _fuzz("results")
test_resume_reader = _fuzz("resume", 500)  # the results reader again, after the torn-line repair
test_layers_reader = _fuzz("layers")
test_rounds_reader = _fuzz("rounds")
test_clients_reader = _fuzz("clients")
test_summary_reader = _fuzz("summary")
test_profiles_reader = _fuzz("profiles")
test_manifest_reader = _fuzz("manifest")


@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_every_truncation_is_rows_or_bad_input(scratch, no_fsync, kind):
    data = SAMPLES[kind][0].encode("utf-8")
    for end in range(len(data) + 1):
        _check(kind, scratch, data[:end])


@pytest.mark.parametrize("kind", sorted(SAMPLES))
@pytest.mark.parametrize("bad_bytes", [b"\xc2", b"\xff\xfe", b"\xe2\x82"], ids=["cut-2-byte", "not-utf8", "cut-3-byte"])
def test_bytes_that_are_not_utf8_at_the_very_end_are_bad_input(scratch, no_fsync, kind, bad_bytes):
    """Found by the fuzzer in CI: a reader that decodes lazily row by row raised UnicodeDecodeError at the last byte.

    _read has already checked that an error is one line with exit status 2. A resume drops a torn last line (the
    row a killed sweep was writing) and keeps the rows before it, so there the result is the intact rows.
    """
    _write_new(scratch, SAMPLES[kind][0].encode("utf-8"))
    intact = _read(kind, scratch)
    _write_new(scratch, SAMPLES[kind][0].encode("utf-8") + bad_bytes)
    result = _read(kind, scratch)
    if kind == "resume":
        assert result == intact
    else:
        assert isinstance(result, W2vprofError), type(result)


@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_the_samples_themselves_read(scratch, kind):
    """The unbroken samples are valid files: a fuzz test of a reader that refuses everything proves nothing."""
    _write_new(scratch, SAMPLES[kind][0].encode("utf-8"))
    assert not isinstance(_read(kind, scratch), W2vprofError)
    _write_new(scratch, b"\xef\xbb\xbf" + SAMPLES[kind][0].replace("\n", "\r\n").encode("utf-8"))
    with_bom = _read(kind, scratch)
    assert not isinstance(with_bom, W2vprofError)
    if kind == "manifest":
        assert with_bom.columns[0] == "client_id"
