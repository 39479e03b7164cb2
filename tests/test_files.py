"""files.py and the sweep's ResultsWriter: atomic writes, the durable CSV, one writer per file, full disks."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from w2vprof import files
from w2vprof.errors import BadInput, W2vprofError
from w2vprof.files import DiskWriteError, DurableCsv, WriterLock, lock_path, write_text_atomic
from w2vprof.records import RESULT_COLUMNS, ResultRecord, read_results_csv
from w2vprof.sweep.writer import ResultsWriter


def _row(batch: int = 1, seconds: float = 1.0) -> ResultRecord:
    return ResultRecord(model="tiny", batch=batch, seconds=seconds, precision="fp32", device="cpu")


def _fail_writes(monkeypatch, code: int = errno.ENOSPC, after_bytes: int = 0) -> None:
    """os.write puts `after_bytes` of the next write on disk (a partial write), then fails with `code`."""
    real_write = os.write

    def failing_write(fd, data):
        if after_bytes:
            real_write(fd, bytes(data[:after_bytes]))
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(files.os, "write", failing_write)


# --- atomic whole-file writes ------------------------------------------------------------------------------------


def test_atomic_write_replaces_the_whole_file_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "out.txt"
    write_text_atomic(path, "old\n")
    write_text_atomic(path, "new\n")
    assert path.read_text() == "new\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


@pytest.mark.parametrize(
    "code, cause",
    [
        (errno.ENOSPC, "no space left on device"),
        (errno.EIO, "input/output error"),
        (errno.EROFS, "read-only file system"),
        (errno.EDQUOT, "quota exceeded"),
    ],
)
def test_atomic_write_on_a_failing_disk_keeps_the_old_file(tmp_path, monkeypatch, code, cause):
    path = tmp_path / "out.txt"
    write_text_atomic(path, "old\n")
    _fail_writes(monkeypatch, code, after_bytes=2)
    with pytest.raises(DiskWriteError) as caught:
        write_text_atomic(path, "new content\n")
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and cause in message.lower() and "\n" not in message
    assert caught.value.exit_code == 2 and caught.value.errno == code
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_atomic_write_failing_fsync_is_a_disk_error_too(tmp_path, monkeypatch):
    def failing_fsync(fd):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(files.os, "fsync", failing_fsync)
    with pytest.raises(DiskWriteError, match="input/output error"):
        write_text_atomic(tmp_path / "a.txt", "x")
    assert list(tmp_path.iterdir()) == []


# --- the durable CSV ---------------------------------------------------------------------------------------------


def test_durable_csv_writes_the_header_once_and_appends_whole_lines(tmp_path):
    path = tmp_path / "t.csv"
    DurableCsv(path, ("a", "b")).append_rows([["1", "x,y"]])
    DurableCsv(path, ("a", "b")).append_rows([["2", ""], ["3", "z"]])
    assert path.read_text() == 'a,b\n1,"x,y"\n2,\n3,z\n'


def test_durable_csv_refuses_a_file_with_other_columns(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("c,d\n1,2\n")
    with pytest.raises(BadInput, match="columns are not the ones"):
        DurableCsv(path, ("a", "b"))
    assert path.read_text() == "c,d\n1,2\n"


def test_durable_csv_accepts_its_own_header_with_a_bom_and_crlf(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes(b"\xef\xbb\xbfa,b\r\n1,2\r\n")
    DurableCsv(path, ("a", "b")).append_rows([["3", "4"]])
    assert path.read_bytes().endswith(b"1,2\r\n3,4\n")


def test_durable_csv_gives_an_empty_file_its_header(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("")
    DurableCsv(path, ("a", "b")).append_rows([["1", "2"]])
    assert path.read_text() == "a,b\n1,2\n"


@pytest.mark.parametrize("partial", [0, 3])
def test_failed_append_leaves_no_partial_line(tmp_path, monkeypatch, partial):
    path = tmp_path / "t.csv"
    table = DurableCsv(path, ("a", "b"))
    table.append_rows([["1", "2"]])
    before = path.read_bytes()
    _fail_writes(monkeypatch, errno.ENOSPC, after_bytes=partial)
    with pytest.raises(DiskWriteError) as caught:
        table.append_rows([["333333", "444444"]])
    assert str(caught.value) == f"{path}: no space left on device (free some space); rows written before are intact"
    assert path.read_bytes() == before


def test_failed_fsync_of_an_append_cuts_the_rows_back(tmp_path, monkeypatch):
    path = tmp_path / "t.csv"
    table = DurableCsv(path, ("a",))
    table.append_rows([["1"]])
    real_fsync = os.fsync
    calls = []

    def fsync_failing_once(fd):
        calls.append(fd)
        if len(calls) == 1:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_fsync(fd)

    monkeypatch.setattr(files.os, "fsync", fsync_failing_once)
    with pytest.raises(DiskWriteError, match="input/output error"):
        table.append_rows([["2"]])
    assert path.read_text() == "a\n1\n"


def test_a_file_that_cannot_take_its_header_is_not_left_behind(tmp_path, monkeypatch):
    _fail_writes(monkeypatch, errno.ENOSPC, after_bytes=1)
    with pytest.raises(DiskWriteError, match="nothing was written"):
        DurableCsv(tmp_path / "t.csv", ("a", "b"))
    assert list(tmp_path.iterdir()) == []


def test_replace_rows_rewrites_the_file(tmp_path):
    path = tmp_path / "t.csv"
    table = DurableCsv(path, ("a",))
    table.append_rows([["1"], ["2"]])
    table.replace_rows([["3"]])
    table.append_rows([["4"]])
    assert path.read_text() == "a\n3\n4\n"


# --- one writer per file -----------------------------------------------------------------------------------------


def test_second_writer_gets_the_holders_pid_and_the_sidecar_goes_with_the_lock(tmp_path):
    path = tmp_path / "r.csv"
    lock = WriterLock.acquire(path)
    assert lock_path(path).read_text() == f"{os.getpid()}\n"
    with pytest.raises(BadInput) as caught:
        WriterLock.acquire(path)
    assert str(caught.value) == f"{path}: being written by another w2vprof process (pid {os.getpid()})"
    lock.release()
    assert not lock_path(path).exists()
    with WriterLock.acquire(path):  # free again
        pass


def test_a_stale_sidecar_does_not_block(tmp_path):
    path = tmp_path / "r.csv"
    lock_path(path).write_text("999999\n")  # left by a writer killed before it could remove it
    with WriterLock.acquire(path) as lock:
        assert lock.held


def test_a_killed_holder_never_blocks(tmp_path):
    path = tmp_path / "r.csv"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from w2vprof.files import WriterLock; "
            "WriterLock.acquire(sys.argv[1]); print('locked', flush=True); time.sleep(60)",
            str(path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(BadInput, match=f"pid {holder.pid}"):
            WriterLock.acquire(path)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with WriterLock.acquire(path):
        pass


def test_writers_started_together_exactly_one_wins(tmp_path):
    path = tmp_path / "r.csv"
    barrier = threading.Barrier(8)
    outcomes: list[object] = []

    def start() -> None:
        barrier.wait()
        try:
            outcomes.append(ResultsWriter.open(path, resume=False)[0])
        except BadInput as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=start) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [o for o in outcomes if isinstance(o, ResultsWriter)]
    assert len(winners) == 1
    assert all("being written by another w2vprof process" in str(o) for o in outcomes if o not in winners)
    winners[0].append(_row())
    winners[0].close()
    assert len(read_results_csv(path)) == 1


# --- ResultsWriter.open ------------------------------------------------------------------------------------------


def test_open_creates_a_new_file_and_holds_the_lock_until_closed(tmp_path):
    path = tmp_path / "r.csv"
    writer, existing = ResultsWriter.open(path, resume=False)
    assert existing == [] and path.read_text().startswith(",".join(RESULT_COLUMNS[:3]))
    with pytest.raises(BadInput, match="being written by another"):
        ResultsWriter.open(path, resume=True)
    writer.append(_row())
    writer.close()
    writer.close()  # twice is fine
    again, existing = ResultsWriter.open(path, resume=True)
    with again:
        assert [(r.model, r.batch) for r in existing] == [("tiny", 1)]


def test_open_refuses_a_file_with_rows_unless_resuming(tmp_path):
    path = tmp_path / "r.csv"
    with ResultsWriter.open(path, resume=False)[0] as writer:
        writer.append(_row())
    with pytest.raises(BadInput, match="already holds 1 result rows"):
        ResultsWriter.open(path, resume=False)
    assert not lock_path(path).exists()  # a refused open releases the lock


def test_open_reuses_a_header_only_file_without_resume(tmp_path):
    path = tmp_path / "r.csv"
    ResultsWriter.open(path, resume=False)[0].close()  # a sweep killed before its first row
    writer, existing = ResultsWriter.open(path, resume=False)
    with writer:
        writer.append(_row())
    assert existing == [] and len(read_results_csv(path)) == 1


def test_open_leaves_a_foreign_file_untouched(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("name,score\nann,3\n")
    with pytest.raises(BadInput, match="not a w2vprof results file"):
        ResultsWriter.open(path, resume=True)
    assert path.read_text() == "name,score\nann,3\n" and not lock_path(path).exists()


def test_open_drops_a_torn_last_line(tmp_path):
    path = tmp_path / "r.csv"
    with ResultsWriter.open(path, resume=False)[0] as writer:
        writer.append(_row())
    with open(path, "a") as handle:
        handle.write("tiny,2,1.0,fp32,cp")  # a power cut in the middle of a write
    writer, existing = ResultsWriter.open(path, resume=True)
    writer.close()
    assert len(existing) == 1 and path.read_text().endswith("\n")


def test_replace_rows_keeps_the_lock_and_later_appends(tmp_path):
    path = tmp_path / "r.csv"
    writer, _ = ResultsWriter.open(path, resume=False)
    writer.append(_row(1))
    writer.append(ResultRecord(model="tiny", batch=2, seconds=1.0, status="error", error="boom"))
    rows = read_results_csv(path)
    writer.replace([rows[0], _row(2)])
    writer.append(_row(4))
    with pytest.raises(BadInput, match="being written by another"):
        ResultsWriter.open(path, resume=True)
    writer.close()
    assert [(r.batch, r.status) for r in read_results_csv(path)] == [(1, "ok"), (2, "ok"), (4, "ok")]


def test_no_space_after_two_rows_keeps_both_and_resume_finishes(tmp_path, monkeypatch):
    path = tmp_path / "r.csv"
    writer, _ = ResultsWriter.open(path, resume=False)
    writer.append(_row(1))
    writer.append(_row(2))
    with monkeypatch.context() as patch:
        _fail_writes(patch, errno.ENOSPC, after_bytes=10)
        with pytest.raises(W2vprofError) as caught:
            writer.append(_row(4))
    writer.close()
    message = str(caught.value)
    assert caught.value.exit_code == 2 and str(path) in message and "no space left on device" in message
    assert "resume" in message
    writer, existing = ResultsWriter.open(path, resume=True)
    assert [r.batch for r in existing] == [1, 2]
    with writer:
        writer.append(_row(4))
    assert [r.batch for r in read_results_csv(path)] == [1, 2, 4]


def test_open_in_an_unwritable_folder_is_one_line(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        if os.access(folder, os.W_OK):  # root ignores permissions
            pytest.skip("running as root: the folder stays writable")
        with pytest.raises(DiskWriteError, match="permission denied"):
            ResultsWriter.open(folder / "r.csv", resume=False)
    finally:
        folder.chmod(0o700)


def test_cli_output_file_on_a_full_disk_is_one_line(tmp_path, monkeypatch, capsys):
    from w2vprof.report.views import write_out

    _fail_writes(monkeypatch)
    with pytest.raises(DiskWriteError, match=r"out\.csv: no space left on device"):
        write_out("a,b\n", tmp_path / "out.csv")
    assert list(tmp_path.iterdir()) == []


def test_path_helpers_take_strings(tmp_path):
    table = DurableCsv(str(tmp_path / "t.csv"), ["a"])
    assert isinstance(table.path, Path) and table.columns == ("a",)


def test_atomic_write_with_a_mode_is_private_from_the_first_byte(tmp_path):
    old_umask = os.umask(0o277)  # a umask that would even take the owner's write bit
    try:
        write_text_atomic(tmp_path / "a.txt", "x")
        files.write_bytes_atomic(tmp_path / "key", b"secret", mode=0o600)
    finally:
        os.umask(old_umask)
    assert (tmp_path / "key").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "key").read_bytes() == b"secret"


def test_exclusive_atomic_write_never_replaces_a_file(tmp_path):
    path = tmp_path / "key"
    files.write_bytes_atomic(path, b"first", exclusive=True)
    with pytest.raises(FileExistsError):
        files.write_bytes_atomic(path, b"second", exclusive=True)
    assert path.read_bytes() == b"first" and sorted(p.name for p in tmp_path.iterdir()) == ["key"]
