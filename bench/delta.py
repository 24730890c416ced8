"""The product's Delta path vs the bare libraries.

Both sides start from the same polars DataFrame and write with delta-rs' default writer
(same Parquet layout and compression, one file per write at these sizes).

Write: ``tables.write_table`` (polars -> Arrow, schema checks, conformance, commit metadata and
write id, the creation check, the row count it reports) vs ``deltalake.write_deltalake`` of
``df.to_arrow()`` (the bare minimum to get a polars frame into Delta), each into a fresh table.
Read: ``tables.read_table`` (existence check, Delta log, polars scan) vs ``pl.read_parquet`` of
the very Parquet files the Delta table holds (same bytes, so the ratio is the cost of the log).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import polars as pl

from bench.common import Row, median_time, synthetic_frame


def frame(rows: int) -> pl.DataFrame:
    df = synthetic_frame(rows, seed=3, numeric=20, categorical=3)
    rng = np.random.default_rng(4)
    return df.with_columns(pl.Series("id", np.arange(rows, dtype=np.int64)),
                           pl.Series("flag", rng.integers(0, 2, rows, dtype=np.int64)))


def run(rows: int, repeat: int) -> list[Row]:
    from deltalake import DeltaTable, write_deltalake

    from mlops_assets.tables import read_table, write_table

    df = frame(rows)
    root = Path(tempfile.mkdtemp(prefix="bench_delta_"))
    counter = iter(range(10**6))

    def fresh() -> str:
        path = root / f"t{next(counter)}"
        return str(path)

    def ours_write():
        write_table(fresh(), df, mode="overwrite", commit_metadata={"bench": "1"})

    def bare_write():
        write_deltalake(fresh(), df.to_arrow(), mode="overwrite")

    try:
        # Alternate, so both sides see the same machine state; one untimed call each first.
        ours_write(); bare_write()
        t_ours, t_bare = [], []
        for _ in range(repeat):
            t_ours.append(median_time(ours_write, 1)[0])
            t_bare.append(median_time(bare_write, 1)[0])
        w_ours, w_bare = float(np.median(t_ours)), float(np.median(t_bare))

        uri = fresh()
        write_table(uri, df, mode="overwrite")
        files = DeltaTable(uri).file_uris()
        # A read from the page cache takes tens of milliseconds, so a few runs are noise: many
        # runs, alternated, one untimed call each first.
        read_table(uri); pl.read_parquet(files)
        reads = max(21, 5 * repeat)
        t_ours, t_bare = [], []
        for _ in range(reads):
            t_ours.append(median_time(lambda: read_table(uri), 1)[0])
            t_bare.append(median_time(lambda: pl.read_parquet(files), 1)[0])
        r_ours, r_bare = float(np.median(t_ours)), float(np.median(t_bare))
        assert read_table(uri).height == pl.read_parquet(files).height == rows
    finally:
        shutil.rmtree(root, ignore_errors=True)

    mb = df.estimated_size() / 2**20
    size = f"{rows:,} x {df.width} ({mb:.0f} MB in memory)"
    return [
        Row(f"Delta write, {size}", f"write_table {w_ours:.3f} s", f"write_deltalake {w_bare:.3f} s",
            w_ours / w_bare, "ours / bare", "<= 1.2x", w_ours / w_bare <= 1.2,
            "fresh table each time, the two sides alternated; both start from the same polars "
            "frame (the bare side times df.to_arrow() + write_deltalake, the least a polars caller "
            "does); write_table adds its schema checks, commit metadata, creation check and the "
            "row count it reports; same delta-rs writer, same Parquet files"),
        Row(f"Delta read, {size}", f"read_table {r_ours:.3f} s", f"read_parquet {r_bare:.3f} s",
            r_ours / r_bare, "ours / bare", "<= 1.1x", r_ours / r_bare <= 1.1,
            f"median of {reads} alternated reads (from the page cache); the Parquet side reads the "
            "same files the Delta table holds (one commit); read_table opens the table's log once "
            "(existence check) and hands that table to pl.read_delta"),
    ]
