"""The Delta write path (mlops_assets.tables) on real Delta tables in tmp_path.

Cases under cases/ (c01, c03, c05, c07, c08) are copies of the shared fault cases; c06 (concurrent
writers) and the crash test have no input file and build their data here.
"""

import logging
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from datetime import date, datetime
from pathlib import Path

import deltalake
import polars as pl
import pytest

from mlops_assets import tables
from mlops_assets.tables import (
    DuplicateKeys,
    delete_rows,
    SchemaMismatch,
    WriteConflict,
    open_table,
    read_table,
    scan_table,
    table_metadata,
    table_version,
    to_pandas_safe,
    upsert_table,
    write_table,
)

CASES = Path(__file__).parent / "cases"
REPO = Path(__file__).resolve().parents[1]


def case(name: str, file: str, **kw) -> pl.DataFrame:
    return pl.read_csv(CASES / name / file, **kw)


def rows(uri, *by) -> list[dict]:
    df = read_table(str(uri))
    return df.sort(list(by) or df.columns).to_dicts()


@pytest.fixture
def uri(tmp_path) -> str:
    return str(tmp_path / "table")


def test_scan_table_reads_a_version_lazily_as_read_table_does(uri):
    write_table(uri, pl.DataFrame({"window": ["a", "b"], "x": [1, 2]}))
    write_table(uri, pl.DataFrame({"window": ["c"], "x": [3]}))
    for version in (0, 1, None):
        lazy = scan_table(uri, version).filter(pl.col("x") > 1).select("x").collect()
        assert lazy.equals(read_table(uri, version).filter(pl.col("x") > 1).select("x"))
    assert scan_table(uri, 0).collect().height == 2
    with pytest.raises(FileNotFoundError, match="materialize the asset"):
        scan_table(uri + "_missing")


# --------------------------------------------------------------------------------------------
# 1, 8: schema enforcement, refusals before any commit


def test_missing_columns_are_filled_with_nulls_of_the_table_type(uri):
    write_table(uri, pl.DataFrame({"id": [1], "score": [0.5], "tag": ["a"]}))
    res = write_table(uri, pl.DataFrame({"id": [2]}))
    assert res.committed and res.version == 1 and res.table_rows == 2
    df = read_table(uri)
    assert df.schema == {"id": pl.Int64, "score": pl.Float64, "tag": pl.String}
    assert df.filter(pl.col("id") == 2).row(0) == (2, None, None)


def test_safe_widenings_are_cast_and_logged(uri, caplog):
    write_table(uri, pl.DataFrame({"a": [1], "b": [1], "c": [1], "f": [1.0], "n": ["x"]}))
    batch = pl.DataFrame({
        "a": pl.Series([2], dtype=pl.Int8), "b": pl.Series([2], dtype=pl.Int16),
        "c": pl.Series([2], dtype=pl.Int32), "f": pl.Series([2.5], dtype=pl.Float32),
        "n": pl.Series([None], dtype=pl.Null),
    })
    with caplog.at_level(logging.INFO, logger="mlops_assets.tables"):
        res = write_table(uri, batch)
    assert res.committed and res.version == 1
    df = read_table(uri)
    assert df.schema == {"a": pl.Int64, "b": pl.Int64, "c": pl.Int64, "f": pl.Float64, "n": pl.String}
    assert df.sort("a").row(1) == (2, 2, 2, 2.5, None)
    widened = [r.getMessage() for r in caplog.records if "widening column" in r.getMessage()]
    assert len(widened) == 4 and any("int8 to int64" in m for m in widened)
    assert any("column n has no values" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    "column, value, batch_type, table_type",
    [
        ("id", pl.Series(["7"]), "string", "int64"),
        ("score", pl.Series([1], dtype=pl.Int64), "int64", "double"),  # int64 -> float64 may round
        ("when", pl.Series([date(2020, 1, 1)]), "date32", "timestamp"),
    ],
)
def test_other_type_changes_are_refused_before_any_commit(uri, column, value, batch_type, table_type):
    write_table(uri, pl.DataFrame({"id": [1], "score": [0.5], "when": [datetime(2020, 1, 1)]}))
    with pytest.raises(SchemaMismatch) as err:
        write_table(uri, pl.DataFrame({"id": [2]}).with_columns(value.alias(column)))
    message = str(err.value)
    assert repr(column) in message and batch_type in message and table_type in message
    assert table_version(uri) == 0 and read_table(uri).height == 1


def test_new_columns_only_with_evolve_schema(uri):
    write_table(uri, pl.DataFrame({"id": [1]}))
    with pytest.raises(SchemaMismatch, match=r"\['extra'\]"):
        write_table(uri, pl.DataFrame({"id": [2], "extra": ["x"]}))
    assert table_version(uri) == 0
    res = write_table(uri, pl.DataFrame({"id": [2], "extra": ["x"]}), evolve_schema=True)
    assert res.version == 1
    assert rows(uri, "id") == [{"id": 1, "extra": None}, {"id": 2, "extra": "x"}]


def test_failures_before_the_commit_leave_the_version_unchanged(uri):
    write_table(uri, pl.DataFrame({"id": [1], "window": ["a"]}), partition_by=["window"])
    attempts = [
        # a batch row outside the replace_where predicate: delta-rs refuses it while writing
        lambda: write_table(uri, pl.DataFrame({"id": [2], "window": ["b"]}), mode="overwrite",
                            replace_where="window = 'a'"),
        # a different partitioning than the table's
        lambda: write_table(uri, pl.DataFrame({"id": [2], "window": ["a"]}), partition_by=["id"]),
        # a declared type the values do not fit
        lambda: write_table(uri, pl.DataFrame({"id": ["x"], "window": ["a"]}), schema={"id": pl.Int64}),
    ]
    for attempt in attempts:
        with pytest.raises(Exception):
            attempt()
        assert table_version(uri) == 0
    assert rows(uri) == [{"id": 1, "window": "a"}]


def test_storage_types_round_trip_and_append_again(uri):
    """Categorical, large strings, lists, structs and unsigned ints are stored as Delta types, so
    the same frame appends again; a uint32 above the int32 range keeps its value."""
    df = pl.DataFrame({
        "cat": pl.Series(["a"], dtype=pl.Categorical),
        "lst": [[1, 2]],
        "st": [{"x": 1, "y": "b"}],
        "u32": pl.Series([4_000_000_000], dtype=pl.UInt32),
        "tz": pl.Series([datetime(2020, 1, 1)]).dt.replace_time_zone("UTC"),
    })
    write_table(uri, df)
    res = write_table(uri, df)
    assert res.version == 1 and res.table_rows == 2
    back = read_table(uri)
    assert back["u32"].to_list() == [4_000_000_000] * 2 and back["lst"].to_list() == [[1, 2]] * 2
    assert back["st"].to_list() == [{"x": 1, "y": "b"}] * 2


def test_timestamps_are_stored_in_microseconds_never_truncated_silently(uri):
    ns = pl.Series([datetime(2020, 1, 1)]).cast(pl.Datetime("ns"))
    write_table(uri, pl.DataFrame({"t": ns, "m": ns.cast(pl.Datetime("ms"))}))
    assert read_table(uri).schema == {"t": pl.Datetime("us"), "m": pl.Datetime("us")}
    finer = pl.Series([1_577_836_800_000_000_001]).cast(pl.Datetime("ns"))  # 2020-01-01 + 1 ns
    with pytest.raises(SchemaMismatch, match=r"column 't' \(timestamp\[ns\]\)"):
        write_table(uri, pl.DataFrame({"t": finer}))
    assert table_version(uri) == 0


def test_a_commit_logs_table_operation_rows_and_version(uri, caplog):
    with caplog.at_level(logging.INFO, logger="mlops_assets.tables"):
        write_table(uri, pl.DataFrame({"id": [1, 2, 3]}))
        write_table(uri, pl.DataFrame({"id": [4]}), mode="overwrite")
    commits = [r.getMessage() for r in caplog.records if "committed" in r.getMessage()]
    assert commits == [
        f"{uri}: append committed 3 rows -> version 0 (table now 3 rows)",
        f"{uri}: overwrite committed 1 rows -> version 1 (table now 1 rows)",
    ]


# --------------------------------------------------------------------------------------------
# 2: c01, a column with no values


def test_c01_blank_column_on_append_takes_the_table_type(uri):
    write_table(uri, case("c01_null_column_append", "v0.csv"))
    batch = case("c01_null_column_append", "append.csv")
    assert batch.schema["score"] == pl.String  # what the reader guessed for an all-blank column
    res = write_table(uri, batch)
    assert res.committed and res.version == 1 and res.table_rows == 6
    df = read_table(uri)
    assert df.schema["score"] == pl.Int64
    assert df.sort("id")["score"].to_list() == [7, 3, None, None, None, None]


@pytest.mark.parametrize("blank", ["csv", "null_dtype"])
def test_c01_new_table_never_gets_an_untyped_column(uri, blank):
    batch = case("c01_null_column_append", "append.csv")
    if blank == "null_dtype":
        batch = batch.with_columns(pl.lit(None).alias("score"))
        assert batch.schema["score"] == pl.Null
    with pytest.raises(SchemaMismatch, match=r"\['score'\].*Declare their types"):
        write_table(uri, batch)
    assert open_table(uri) is None
    res = write_table(uri, batch, schema={"score": pl.Int64})
    assert res.committed and res.version == 0
    assert read_table(uri).schema == {"id": pl.Int64, "region": pl.String, "score": pl.Int64}


def test_c01_blank_new_column_needs_a_declared_type_too(uri):
    write_table(uri, pl.DataFrame({"id": [1]}))
    with pytest.raises(SchemaMismatch, match="score"):
        write_table(uri, pl.DataFrame({"id": [2], "score": [None]}), evolve_schema=True)
    assert table_version(uri) == 0
    write_table(uri, pl.DataFrame({"id": [2], "score": [None]}), evolve_schema=True,
                schema={"score": pl.Float64})
    assert read_table(uri).schema["score"] == pl.Float64


def test_declared_schema_names_the_value_that_does_not_fit(uri):
    with pytest.raises(SchemaMismatch, match=r"'score' is declared Int64 .* 'n/a'"):
        write_table(uri, pl.DataFrame({"score": ["1", "n/a"]}), schema={"score": pl.Int64})
    res = write_table(uri, pl.DataFrame({"score": ["1", "2"]}), schema={"score": pl.Int16})
    assert res.committed and read_table(uri).schema["score"] == pl.Int16


# --------------------------------------------------------------------------------------------
# 3: c03 and c05, upserts


def test_c03_upsert_adds_new_columns_updates_and_inserts(uri):
    write_table(uri, case("c03_upsert_new_columns", "target.csv"))
    res = upsert_table(uri, case("c03_upsert_new_columns", "source.csv"), keys=["user_id"])
    assert res.committed and res.version == 1 and res.operation == "merge"
    assert res.metrics["num_target_rows_updated"] == 1 and res.metrics["num_target_rows_inserted"] == 1
    assert rows(uri, "user_id") == [
        {"user_id": 1, "user_name": "anne", "note": "renamed", "city": "Lyon"},
        {"user_id": 2, "user_name": "bob", "note": "new", "city": "Porto"},
    ]
    # untouched rows get null in the new columns; columns missing from a batch keep their values
    upsert_table(uri, pl.DataFrame({"user_id": [3], "user_name": ["cy"]}), keys=["user_id"])
    upsert_table(uri, pl.DataFrame({"user_id": [1], "city": ["Nice"]}), keys=["user_id"])
    assert rows(uri, "user_id") == [
        {"user_id": 1, "user_name": "anne", "note": "renamed", "city": "Nice"},
        {"user_id": 2, "user_name": "bob", "note": "new", "city": "Porto"},
        {"user_id": 3, "user_name": "cy", "note": None, "city": None},
    ]
    meta = table_metadata(res, read_table(uri))
    assert meta["rows_inserted"] == 1 and meta["rows_updated"] == 1


def test_c03_new_columns_refused_without_evolution_never_dropped(uri):
    write_table(uri, case("c03_upsert_new_columns", "target.csv"))
    with pytest.raises(SchemaMismatch, match=r"\['note', 'city'\]"):
        upsert_table(uri, case("c03_upsert_new_columns", "source.csv"), keys=["user_id"],
                     evolve_schema=False)
    assert table_version(uri) == 0


def test_c05_duplicate_keys_are_refused_before_any_commit(uri):
    write_table(uri, case("c05_duplicate_keys", "target.csv"))
    with pytest.raises(DuplicateKeys) as err:
        upsert_table(uri, case("c05_duplicate_keys", "changes.csv"), keys=["id"])
    assert "['id']" in str(err.value) and "id=1 ×3, id=2 ×2" in str(err.value)
    assert table_version(uri) == 0
    assert rows(uri, "id") == [{"id": 1, "attr": "x"}, {"id": 2, "attr": "y"}]


def test_c05_last_wins_keeps_the_last_row_per_key(uri):
    write_table(uri, case("c05_duplicate_keys", "target.csv"))
    res = upsert_table(uri, case("c05_duplicate_keys", "changes.csv"), keys=["id"],
                       on_duplicates="last_wins")
    assert res.rows == 2 and res.table_rows == 2
    df = read_table(uri)
    assert df["id"].is_unique().all()
    assert df.sort("id").select("id", "attr").rows() == [(1, "c"), (2, "e")]


def test_upsert_with_composite_keys_lists_each_duplicate(uri):
    batch = pl.DataFrame({"a": [1, 1, 2], "b": ["x", "x", "y"], "v": [1, 2, 3]})
    with pytest.raises(DuplicateKeys, match=r"\(a=1, b='x'\) ×2"):
        upsert_table(uri, batch, keys=["a", "b"])
    assert open_table(uri) is None


def test_upsert_creates_a_missing_table_and_refuses_null_keys(uri):
    res = upsert_table(uri, pl.DataFrame({"id": [1, 2], "v": ["a", "b"]}), keys=["id"])
    assert res.committed and res.version == 0 and res.table_rows == 2
    with pytest.raises(ValueError, match="must not be null"):
        upsert_table(uri, pl.DataFrame({"id": [None, 3], "v": ["c", "d"]}), keys=["id"])
    upsert_table(uri, pl.DataFrame({"id": [2, 3], "v": ["B", "c"]}), keys=["id"])
    assert read_table(uri).sort("id").rows() == [(1, "a"), (2, "B"), (3, "c")]


# --------------------------------------------------------------------------------------------
# 4: c07, empty batches


def test_c07_empty_batch_commits_nothing_and_is_no_new_data(uri):
    write_table(uri, pl.DataFrame({"id": [1, 2], "flag": [True, False]}))
    empty = case("c07_empty_batch", "empty.csv")
    assert empty.height == 0
    res = write_table(uri, empty)
    assert (res.committed, res.version, res.rows, res.table_rows) == (False, 0, 0, 2)
    assert table_version(uri) == 0
    meta = table_metadata(res, empty)
    assert meta["rows_written"] == 0 and meta["new_data"] is False
    assert meta["delta_committed"] is False and meta["delta_version"] == 0
    assert meta["dagster/row_count"] == 2  # the table's size, unchanged
    # an upsert of nothing is nothing either
    assert upsert_table(uri, empty, keys=["id"]).committed is False
    assert table_version(uri) == 0


def test_c07_empty_overwrite_truncates_only_when_allowed(uri):
    write_table(uri, pl.DataFrame({"id": [1, 2], "flag": [True, False]}))
    empty = case("c07_empty_batch", "empty.csv")
    res = write_table(uri, empty, mode="overwrite")
    assert not res.committed and table_version(uri) == 0 and read_table(uri).height == 2
    res = write_table(uri, empty, mode="overwrite", allow_truncate=True)
    assert res.committed and res.operation == "truncate" and res.version == 1 and res.table_rows == 0
    assert read_table(uri).height == 0 and read_table(uri, version=0).height == 2
    assert table_metadata(res, empty)["new_data"] is False


def test_c07_empty_batch_on_a_missing_table_creates_nothing(uri):
    res = write_table(uri, case("c07_empty_batch", "empty.csv"))
    assert (res.committed, res.version, res.rows) == (False, None, 0)
    assert open_table(uri) is None
    assert table_metadata(res, pl.DataFrame())["delta_version"] == -1


# --------------------------------------------------------------------------------------------
# 5: c08, timestamps outside the nanosecond range


def test_c08_sentinel_timestamps_survive_a_delta_round_trip(uri):
    dims = case("c08_sentinel_timestamps", "dims.csv", try_parse_dates=True)
    assert dims.schema["valid_to"] == pl.Datetime("us")
    write_table(uri, dims)
    back = read_table(uri).sort("key")
    assert back.equals(dims)
    assert back["valid_to"][1] == datetime(9999, 12, 31) and back["valid_from"][2] == datetime(1, 1, 1)


def test_c08_to_pandas_safe_keeps_microseconds():
    dims = case("c08_sentinel_timestamps", "dims.csv", try_parse_dates=True).with_columns(
        day=pl.col("valid_to").dt.date())
    pdf = to_pandas_safe(dims, "drift reference")
    assert str(pdf["valid_to"].dtype) == "datetime64[us]"
    assert pdf["valid_to"].max().to_pydatetime() == datetime(9999, 12, 31)
    assert pdf["valid_from"].min().to_pydatetime() == datetime(1, 1, 1)
    assert pdf["day"].max().date() == date(9999, 12, 31)


def test_c08_to_pandas_safe_refuses_naming_column_and_value_when_ns_is_needed():
    dims = case("c08_sentinel_timestamps", "dims.csv", try_parse_dates=True)
    with pytest.raises(ValueError, match=r"mlflow input: column 'valid_from' holds 0001-01-01"):
        to_pandas_safe(dims, "mlflow input", datetime_unit="ns")
    with pytest.raises(ValueError, match=r"column 'valid_to' holds 9999-12-31"):
        to_pandas_safe(dims.select("key", "valid_to"), datetime_unit="ns")
    ok = to_pandas_safe(dims.filter(pl.col("key") == "A"), datetime_unit="ns")
    assert str(ok["valid_to"].dtype) == "datetime64[ns]"


# --------------------------------------------------------------------------------------------
# 6: c06, concurrent writers


def _append_worker(args):
    """One writer process: ``n`` appends of 5 rows with ids unique to this worker."""
    uri, worker, n = args
    ok, failed, versions = 0, [], []
    for i in range(n):
        ids = [worker * 10_000 + i * 5 + k for k in range(5)]
        try:
            versions.append(write_table(uri, pl.DataFrame({"id": ids, "worker": [worker] * 5})).version)
            ok += 1
        except Exception as e:  # counted and reported, never silent
            failed.append(f"{type(e).__name__}: {e}")
    return ok, failed, versions


def test_c06_concurrent_appends_lose_and_double_nothing(uri):
    """10 processes x 20 appends of 5 rows, racing from the table's creation on.

    Observed with deltalake 1.6.6 on a local disk: appends do race for the next version; delta-rs
    retries a lost race itself (15 times), and with this many writers a few appends still fail
    with CommitFailedError, which write_table retries. Every append must commit exactly once.
    """
    workers, appends = 10, 20
    pool = mp.get_context("spawn").Pool(workers)
    try:
        result = pool.map_async(_append_worker, [(uri, w, appends) for w in range(workers)])
        outcomes = result.get(timeout=150)
    finally:
        pool.terminate()
        pool.join()
    ok = sum(o[0] for o in outcomes)
    failures = [f for o in outcomes for f in o[1]]
    versions = sorted(v for o in outcomes for v in o[2])
    df = read_table(uri)
    assert not failures, failures
    assert ok == workers * appends
    assert df.height == 5 * ok and df["id"].n_unique() == df.height
    # each write reports its own commit: versions 0..N-1, each once
    assert versions == list(range(ok)) and table_version(uri) == ok - 1


@pytest.fixture
def race(monkeypatch):
    """Make the next write_deltalake call inside write_table lose a race: another writer commits a
    real append to the same table just before it."""
    real = tables.write_deltalake
    pending = []

    def racing(table_or_uri, data, **kw):
        while pending:
            other_uri, batch = pending.pop()
            deltalake.write_deltalake(other_uri, batch.to_arrow(), mode="append")
        return real(table_or_uri, data, **kw)

    monkeypatch.setattr(tables, "write_deltalake", racing)
    return lambda uri, batch: pending.append((uri, batch))


def test_c06_overwrite_race_ends_in_one_clear_conflict(uri, race):
    write_table(uri, pl.DataFrame({"id": [1, 2]}))
    race(uri, pl.DataFrame({"id": [10]}))
    with pytest.raises(WriteConflict) as err:
        write_table(uri, pl.DataFrame({"id": [99]}), mode="overwrite")
    assert isinstance(err.value, RuntimeError)
    assert uri in str(err.value) and "read version 0" in str(err.value) and "version 1" in str(err.value)
    assert (err.value.read_version, err.value.current_version) == (0, 1)
    assert sorted(read_table(uri)["id"]) == [1, 2, 10]  # the other writer's commit, nothing of ours


def test_c06_replace_where_conflicts_only_on_its_own_rows(uri, race):
    write_table(uri, pl.DataFrame({"id": [1, 2], "w": ["a", "b"]}), partition_by=["w"])
    race(uri, pl.DataFrame({"id": [3], "w": ["b"]}))  # another window: no conflict
    res = write_table(uri, pl.DataFrame({"id": [10], "w": ["a"]}), mode="overwrite",
                      replace_where="w = 'a'")
    assert res.version == 2
    assert read_table(uri).sort("id").rows() == [(2, "b"), (3, "b"), (10, "a")]
    race(uri, pl.DataFrame({"id": [11], "w": ["a"]}))  # same window: conflict
    with pytest.raises(WriteConflict, match="replace_where lost a commit race: it read version 2"):
        write_table(uri, pl.DataFrame({"id": [20], "w": ["a"]}), mode="overwrite",
                    replace_where="w = 'a'")
    assert read_table(uri).sort("id").rows() == [(2, "b"), (3, "b"), (10, "a"), (11, "a")]


def test_c06_append_after_a_race_is_rebased_not_lost(uri, race):
    write_table(uri, pl.DataFrame({"id": [1]}))
    race(uri, pl.DataFrame({"id": [2]}))
    res = write_table(uri, pl.DataFrame({"id": [3]}))
    assert res.version == 2 and res.table_rows == 3
    assert sorted(read_table(uri)["id"]) == [1, 2, 3]


# --------------------------------------------------------------------------------------------
# 7: atomicity under kill -9

_CRASH_WRITER = r"""
import sys
import polars as pl
from mlops_assets.tables import write_table

n = int(sys.argv[2])
df = pl.DataFrame({"id": pl.int_range(1, n + 1, eager=True)}).with_columns(
    x=pl.col("id").cast(pl.Float64) * 1.5, s=pl.col("id").cast(pl.String))
print("writing", flush=True)
write_table(sys.argv[1], df)
print("done", flush=True)
"""


def _start_writer(uri: str, n: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-c", _CRASH_WRITER, uri, str(n)],
                            stdout=subprocess.PIPE, env=env, text=True)
    assert proc.stdout.readline().strip() == "writing"
    return proc


def test_kill_9_mid_write_leaves_the_old_or_the_new_version(uri):
    write_table(uri, pl.DataFrame({"id": [0], "x": [0.0], "s": ["0"]}))
    big = 4_000_000

    # 1. killed as soon as its first data file shows up: certainly before its commit
    before = set(os.listdir(uri))
    proc = _start_writer(uri, big)
    deadline = time.monotonic() + 30
    while not (set(os.listdir(uri)) - before) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert set(os.listdir(uri)) - before, "the writer was not caught writing"
    assert table_version(uri) == 0 and read_table(uri).height == 1

    # 2. killed after a delay: either outcome, never a mix
    proc = _start_writer(uri, big)
    time.sleep(0.4)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    version, n = table_version(uri), read_table(uri).height
    assert (version, n) in {(0, 1), (1, 1 + big)}

    # the table still takes writes, and dropped files never count
    res = write_table(uri, pl.DataFrame({"id": [-1], "x": [0.0], "s": ["-1"]}))
    assert res.version == version + 1 and res.table_rows == n + 1 == read_table(uri).height


def test_delete_rows_commits_once_and_keeps_history(tmp_path):
    """Deleting by predicate is one new version; the old version still has the rows; deleting
    nothing commits nothing."""
    uri = str(tmp_path / "t")
    write_table(uri, pl.DataFrame({"window": ["a", "b", "c"], "x": [1, 2, 3]}), mode="append",
                partition_by=["window"])
    gone = delete_rows(uri, "window > 'a'")
    assert (gone.committed, gone.rows, gone.version, gone.table_rows) == (True, 2, 1, 1)
    assert read_table(uri, version=0).height == 3
    again = delete_rows(uri, "window > 'a'")
    assert (again.committed, again.version) == (False, 1)
