"""Prediction ids: the documented algorithm, pinned by golden values, computed column-wise; and a
lookup that reads only the files an id points to."""

import hashlib
import os
import struct
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import pytest
from deltalake import DeltaTable

from mlops_assets.prediction_ids import parse_prediction_id, prediction_ids

MASK = 2**64 - 1


def _mix(z: int) -> int:
    z = (z + 0x9E3779B97F4A7C15) & MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def _word(value) -> int:
    """The module doc's word of one value, written out one value at a time."""
    if value is None:
        return 0x6E756C6C6E756C6C
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value & MASK
    if isinstance(value, float):
        return struct.unpack("<Q", struct.pack("<d", value + 0.0))[0]
    if isinstance(value, datetime):
        delta = value - datetime(1970, 1, 1, tzinfo=timezone.utc)
        return (delta // timedelta(microseconds=1)) & MASK
    if isinstance(value, date):
        return (value - date(1970, 1, 1)).days & MASK
    h = 0xCBF29CE484222325
    for byte in str(value).encode():
        h = ((h ^ byte) * 0x100000001B3) & MASK
    return h


def _reference_id(name: str, version: int, window: str, key: tuple) -> str:
    h = int.from_bytes(hashlib.sha256(f"{name}|{version}".encode()).digest()[:8], "big")
    for value in key:
        h = _mix(h ^ _mix(_word(value)))
    return f"{window}.{version}.{h:016x}"


ROWS = pl.DataFrame({
    "window": ["1996-08", "1996-08", "1996-09"],
    "ts": [datetime(1996, 8, 1, 0, 30, tzinfo=timezone.utc),
           datetime(1996, 8, 31, 23, 30, tzinfo=timezone.utc),
           datetime(1960, 1, 1, tzinfo=timezone.utc)],  # before the epoch: negative micros
    "customer": ["C-001", "Zoë", None],
    "n": [3, -1, None],
    "x": [0.5, -0.0, None],
    "day": [date(1996, 8, 1), date(1969, 12, 31), None],
})


def test_ids_follow_the_documented_algorithm_for_each_key_type():
    keys = ("ts", "customer", "n", "x", "day")
    got = prediction_ids("elec2_lightgbm", 7, ROWS, keys).to_list()
    want = [_reference_id("elec2_lightgbm", 7, r["window"], tuple(r[k] for k in keys))
            for r in ROWS.iter_rows(named=True)]
    assert got == want


def test_ids_are_pinned():
    """Persisted ids must not change with a library upgrade or a refactoring."""
    ids = prediction_ids("elec2_lightgbm", 1, ROWS.head(2), ("ts",)).to_list()
    assert ids == ["1996-08.1.fa1328ce56d436d2", "1996-08.1.140d0ae902193f91"]
    assert prediction_ids("churn_lightgbm", 12, ROWS.head(1), ("customer",)).to_list() == [
        "1996-08.12.67f926b73c5200de"]


def test_ids_depend_on_model_and_key_but_not_on_row_order_or_datetime_unit():
    a = prediction_ids("m", 1, ROWS, ("ts",))
    assert a.n_unique() == 3
    assert prediction_ids("m", 2, ROWS, ("ts",)).to_list() != a.to_list()
    assert prediction_ids("other", 1, ROWS, ("ts",)).to_list() != a.to_list()
    assert prediction_ids("m", 1, ROWS.reverse(), ("ts",)).reverse().to_list() == a.to_list()
    ns = ROWS.with_columns(pl.col("ts").cast(pl.Datetime("ns", "UTC")))
    assert prediction_ids("m", 1, ns, ("ts",)).to_list() == a.to_list()


def test_a_repeated_key_within_a_window_is_refused():
    rows = pl.DataFrame({"window": ["w", "w", "v"], "k": [1, 1, 1]})
    with pytest.raises(ValueError, match="share a window and key digest"):
        prediction_ids("m", 1, rows, ("k",))
    assert prediction_ids("m", 1, rows.tail(2), ("k",)).n_unique() == 2  # other window: fine


def test_parse():
    assert parse_prediction_id("1996-08.3.9f2c4e0b5a1d7c36") == ("1996-08", 3, "9f2c4e0b5a1d7c36")
    assert parse_prediction_id("batch.2024.01.12.0123456789abcdef") == (
        "batch.2024.01", 12, "0123456789abcdef")
    assert parse_prediction_id("0a1b2c3d4e5f60718293") is None  # the older sha256 form
    assert parse_prediction_id("1996-08.x.9f2c4e0b5a1d7c36") is None


def test_lookup_reads_only_the_files_the_id_points_to(tmp_path):
    """Three windows, two model versions: once every data file except the one of the id's window
    and version is deleted from disk, the lookup still finds the row, so it never opened them."""
    from mlops_assets.audit import _scan_for_id
    from mlops_assets.tables import write_table

    uri = str(tmp_path / "predictions")
    for window in ("1996-07", "1996-08", "1996-09"):
        for version in (1, 2):
            start = datetime(int(window[:4]), int(window[5:]), 1, tzinfo=timezone.utc)
            rows = pl.DataFrame({"ts": [start + timedelta(minutes=30 * i) for i in range(48)],
                                 "window": window})
            out = rows.with_columns(prediction_ids("m", version, rows, ("ts",)),
                                    pl.lit(version, pl.Int64).alias("model_version"),
                                    pl.lit(0.5).alias("score")).sort("prediction_id")
            write_table(uri, out, mode="overwrite", partition_by=["window"],
                        replace_where=f"window = '{window}' AND model_version = {version}")
    table = DeltaTable(uri)
    full = pl.read_delta(uri)
    wanted = full.filter((pl.col("window") == "1996-08") & (pl.col("model_version") == 2))
    pid = wanted["prediction_id"][7]
    stats = pl.DataFrame(table.get_add_actions(flatten=True))
    keep = {str(Path(table.table_uri.removeprefix("file://")) / p)
            for p in stats.filter(pl.col("max.model_version") == 2)["path"].to_list()
            if "window=1996-08" in p}
    removed = 0
    for path in table.file_uris():
        local = path.removeprefix("file://")
        if local not in keep:
            os.remove(local)
            removed += 1
    assert removed == 5 and len(keep) == 1
    found = _scan_for_id(DeltaTable(uri), pid)
    assert found.height == 1 and found["prediction_id"].item() == pid
    assert found["window"].item() == "1996-08" and found["model_version"].item() == 2
    assert _scan_for_id(DeltaTable(uri), "1996-08.2.0000000000000000").height == 0
    # an id that does not parse gets no partition filter: the 1996-07 file whose id range
    # covers it is opened, and it is gone
    with pytest.raises(Exception):
        _scan_for_id(DeltaTable(uri), "1996-07.1.8-not-an-id")
