"""The one path through which every Delta table is written and read.

Writes enforce the table's schema:

* columns missing from a batch are filled with nulls of the table's type;
* a batch column with no values at all takes the table's type (a CSV reader has no way to know it);
* safe widenings (int8/16/32 -> int64, float32 -> float64, null -> any) are cast and logged;
* any other type change is refused with :class:`SchemaMismatch`, naming the column and both types,
  before anything is committed;
* new columns are added only when the caller asks for schema evolution, and never dropped;
* a new column never gets its type from an absence of values: a column that is all null (Null or
  String, which is what readers fall back to) must have its type declared with ``schema=``.

An empty batch commits nothing. Every write is a single Delta commit, so a reader always sees a
table at its old or its new version. Blind appends that lose a commit race are retried; overwrites
and merges that lose one raise :class:`WriteConflict` instead of being re-run on data they never
saw.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError, TableNotFoundError

if TYPE_CHECKING:  # dagster is imported lazily: worker processes that only write stay light
    import dagster as dg
    import pandas as pd

log = logging.getLogger(__name__)

WRITE_ID_KEY = "mlops_assets.write_id"
"""Commit-info key holding a unique id per write call (for audits and for matching log lines)."""


class SchemaMismatch(ValueError):
    """A batch does not fit the table it is written to."""


class DuplicateKeys(ValueError):
    """An upsert batch holds the same key more than once."""


class WriteConflict(RuntimeError):
    """Another writer committed first, and this write cannot safely be re-run blindly."""

    def __init__(self, uri: str, operation: str, read_version: int | None,
                 current_version: int | None, reason: str):
        self.uri = uri
        self.operation = operation
        self.read_version = read_version
        self.current_version = current_version
        super().__init__(
            f"{uri}: {operation} lost a commit race: it read version {read_version}, but the table "
            f"is now at version {current_version} ({reason.strip().splitlines()[0]}). Nothing of "
            "this write was committed; re-run it against the new version if it still applies."
        )


@dataclass(frozen=True)
class WriteResult:
    """What one write did."""

    uri: str
    version: int | None
    """Table version after the write (unchanged when nothing was committed)."""
    rows: int
    """Rows in the batch."""
    committed: bool
    table_rows: int | None = None
    """Rows in the whole table at ``version``."""
    operation: str | None = None
    """append, overwrite, replace_where, truncate or merge; None when nothing was committed."""
    metrics: dict | None = None
    """For merges: delta-rs' counts of rows inserted, updated and copied."""


def open_table(uri: str, storage_options: dict | None = None, version: int | None = None):
    """The DeltaTable at ``uri`` (at ``version`` if given), or None when there is no table yet."""
    try:
        return DeltaTable(uri, version=version, storage_options=storage_options)
    except TableNotFoundError:
        return None


def table_version(uri: str, storage_options: dict | None = None) -> int | None:
    table = open_table(uri, storage_options)
    return None if table is None else table.version()


def read_table(
    uri: str, version: int | None = None, storage_options: dict | None = None
) -> pl.DataFrame:
    """Read a Delta table, optionally as of an earlier version (time travel).

    The log is read once: the table opened for the existence check is the one polars scans.
    """
    return pl.read_delta(_opened(uri, version, storage_options))


def scan_table(
    uri: str, version: int | None = None, storage_options: dict | None = None
) -> pl.LazyFrame:
    """:func:`read_table` as a lazy frame: the columns and rows a query keeps are all that is
    read, files and row groups being skipped by their statistics where a filter allows."""
    return pl.scan_delta(_opened(uri, version, storage_options))


def _opened(uri: str, version: int | None, storage_options: dict | None) -> DeltaTable:
    table = open_table(uri, storage_options)
    if table is None:
        raise FileNotFoundError(
            f"No Delta table at {uri}: materialize the asset that writes it first.")
    if version is not None and version != table.version():
        table.load_as_version(version)
    return table


# --------------------------------------------------------------------------------------------
# Types


_WIDENINGS = {
    (pa.int8(), pa.int16()), (pa.int8(), pa.int32()), (pa.int8(), pa.int64()),
    (pa.int16(), pa.int32()), (pa.int16(), pa.int64()), (pa.int32(), pa.int64()),
    (pa.float32(), pa.float64()), (pa.int8(), pa.float64()), (pa.int16(), pa.float64()),
    (pa.int32(), pa.float64()),
}

# Delta has no unsigned integers (delta-rs would store uint32 as int32): use a signed type that
# holds every value, and let a checked cast refuse a uint64 beyond the int64 range.
_UNSIGNED = {pa.uint8(): pa.int16(), pa.uint16(): pa.int32(), pa.uint32(): pa.int64(),
             pa.uint64(): pa.int64()}


def _storage_type(t: pa.DataType) -> pa.DataType:
    """The Arrow type Delta stores for ``t``: plain strings, binaries and lists, signed integers,
    microsecond timestamps."""
    if pa.types.is_dictionary(t):
        return _storage_type(t.value_type)
    if pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return pa.string()
    if pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
        return pa.binary()
    if t in _UNSIGNED:
        return _UNSIGNED[t]
    if pa.types.is_timestamp(t) and t.unit != "us":
        return pa.timestamp("us", t.tz)  # Delta keeps microseconds; a checked cast refuses loss
    if pa.types.is_large_list(t) or pa.types.is_list_view(t) or pa.types.is_large_list_view(t):
        return pa.list_(_storage_type(t.value_type))
    if pa.types.is_list(t):
        return pa.list_(_storage_type(t.value_type))
    if pa.types.is_fixed_size_list(t):
        return pa.list_(_storage_type(t.value_type))
    if pa.types.is_struct(t):
        return pa.struct([pa.field(f.name, _storage_type(f.type), f.nullable) for f in t])
    if pa.types.is_map(t):
        return pa.map_(_storage_type(t.key_type), _storage_type(t.item_type))
    return t


_STRING_FLAVOURS = (pa.string(), pa.large_string(), pa.string_view())
_BINARY_FLAVOURS = (pa.binary(), pa.large_binary(), pa.binary_view())


def _same_flavour(have: pa.DataType, want: pa.DataType) -> bool:
    """Two top-level string (or binary) layouts: Delta stores both as the same type, and delta-rs
    writes either without a cast, so the column is passed through as it is."""
    return ((have in _STRING_FLAVOURS and want in _STRING_FLAVOURS)
            or (have in _BINARY_FLAVOURS and want in _BINARY_FLAVOURS))


def _to_storage(batch: pa.Table, uri: str) -> pa.Table:
    """Cast ``batch`` to the types Delta stores, refusing a cast that would change a value.

    Top-level string and binary columns keep their Arrow layout (large or view): Delta has one
    string and one binary type, delta-rs takes any layout, and copying them is pure cost."""
    columns, fields = [], []
    for fld, col in zip(batch.schema, batch.columns):
        want = _storage_type(fld.type)
        if _same_flavour(fld.type, want):
            want = fld.type
        if want != fld.type:
            try:
                col = col.cast(want)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
                raise SchemaMismatch(
                    f"{uri}: column {fld.name!r} ({fld.type}) cannot be stored as {want}: {e}"
                ) from e
        columns.append(col)
        fields.append(pa.field(fld.name, want, fld.nullable))
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))


def _same_instant_types(have: pa.DataType, want: pa.DataType) -> bool:
    """Timestamps that differ only in unit, or in time zone when both have one."""
    if not (pa.types.is_timestamp(have) and pa.types.is_timestamp(want)):
        return False
    return (have.tz is None) == (want.tz is None)


def _is_untyped(col: pa.ChunkedArray) -> bool:
    """No values and a type that only says so: Null, or the String readers fall back to."""
    if pa.types.is_null(col.type):
        return True
    return len(col) > 0 and col.null_count == len(col) and col.type in _STRING_FLAVOURS


def _refuse_untyped(batch: pa.Table, names: list[str], declared: dict, uri: str, what: str) -> None:
    untyped = [n for n in names if n not in declared and _is_untyped(batch.column(n))]
    if untyped:
        raise SchemaMismatch(
            f"{uri}: column(s) {untyped} have no values, so their type cannot be known "
            f"(got {', '.join(str(batch.column(n).type) for n in untyped)}); {what} a column of "
            f"type Null or a guessed type. Declare their types, e.g. "
            f"schema={{{untyped[0]!r}: pl.Int64}}."
        )


def _apply_declared(df: pl.DataFrame, schema: dict, uri: str) -> pl.DataFrame:
    """Cast ``df`` to the declared types; declared columns that are absent arrive as nulls."""
    exprs = []
    for name, dtype in schema.items():
        if name not in df.columns:
            exprs.append(pl.lit(None, dtype).alias(name))
            continue
        col = df.get_column(name)
        if col.dtype == dtype:
            continue
        cast = col.cast(dtype, strict=False)
        bad = col.filter(cast.is_null() & col.is_not_null())
        if bad.len():
            raise SchemaMismatch(
                f"{uri}: column {name!r} is declared {dtype} but holds {bad.len()} value(s) that "
                f"are not, e.g. {bad[0]!r} ({col.dtype})."
            )
        exprs.append(cast.alias(name))
    return df.with_columns(exprs) if exprs else df


def _conform(batch: pa.Table, target: pa.Schema, uri: str, evolve: bool,
             fill_missing: bool = True) -> pa.Table:
    """Cast ``batch`` to the table schema ``target``, refusing unsafe changes.

    Columns the table has and the batch lacks are filled with typed nulls (``fill_missing``), or
    left out so that a merge keeps their stored values. Columns only the batch has are refused
    unless ``evolve``; they are then kept, after the table's columns.
    """
    extra = [name for name in batch.column_names if name not in target.names]
    if extra and not evolve:
        raise SchemaMismatch(
            f"{uri}: batch has columns {extra} that the table lacks. "
            "Ask for schema evolution to add them; columns are never dropped silently."
        )
    columns, fields = [], []
    for fld in target:
        if fld.name not in batch.column_names:
            if fill_missing:
                columns.append(pa.nulls(batch.num_rows, fld.type))
                fields.append(fld)
            continue
        col = batch.column(fld.name)
        if _same_flavour(col.type, fld.type):
            columns.append(col)  # same Delta type, another Arrow layout: no copy
            fields.append(pa.field(fld.name, col.type, fld.nullable, fld.metadata))
            continue
        if col.type != fld.type:
            if pa.types.is_null(col.type) or col.null_count == len(col):
                log.info("%s: column %s has no values; it takes the table's type %s (was %s)",
                         uri, fld.name, fld.type, col.type)
                col = pa.chunked_array([pa.nulls(len(col), fld.type)])
            elif (col.type, fld.type) in _WIDENINGS:
                log.info("%s: widening column %s from %s to %s", uri, fld.name, col.type, fld.type)
            elif not _same_instant_types(col.type, fld.type):
                raise SchemaMismatch(
                    f"{uri}: column {fld.name!r} is {col.type} in the batch but {fld.type} in "
                    "the table; refusing to change its type."
                )
            if col.type != fld.type:
                try:
                    col = col.cast(fld.type)  # checked: truncating a timestamp raises
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
                    raise SchemaMismatch(
                        f"{uri}: column {fld.name!r} ({col.type}) does not fit the table's "
                        f"{fld.type} without changing values: {e}"
                    ) from e
        columns.append(col)
        fields.append(fld)
    for name in extra:
        columns.append(batch.column(name))
        fields.append(batch.schema.field(name))
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))


# --------------------------------------------------------------------------------------------
# Writing


def _count(table: DeltaTable) -> int:
    """Rows in ``table`` at its loaded version, from the log's file statistics when complete."""
    actions = pa.table(table.get_add_actions(flatten=True))
    if actions.num_rows == 0:
        return 0
    if "num_records" in actions.column_names and actions.column("num_records").null_count == 0:
        return int(pc.sum(actions.column("num_records")).as_py())
    return pl.scan_delta(table).select(pl.len()).collect().item()


def _creation_version(
    uri: str, storage_options: dict | None, app_id: str
) -> tuple[int, DeltaTable]:
    """The version at which the write tagged ``app_id`` landed on a table it found missing, and
    the table opened at that version.

    Usually 0. When another writer created the table first, delta-rs appends to it instead, so
    the version is looked up: the tag is absent before that commit and present from it on.
    (``DeltaTable.history()`` is no help here: delta-rs 1.6.6 numbers its entries from the loaded
    snapshot while listing commits from the newest one, which goes wrong under concurrent writes.)
    """
    def tagged(version: int | None) -> DeltaTable | None:
        table = DeltaTable(uri, version=version, storage_options=storage_options)
        return table if table.transaction_version(app_id) is not None else None

    first = tagged(0)
    if first is not None:
        return 0, first
    latest = DeltaTable(uri, storage_options=storage_options).version()
    if tagged(latest) is None:
        raise RuntimeError(f"{uri}: the write that created the table left no trace ({app_id})")
    lo, hi = 1, latest
    while lo < hi:
        mid = (lo + hi) // 2
        if tagged(mid) is not None:
            hi = mid
        else:
            lo = mid + 1
    return lo, DeltaTable(uri, version=lo, storage_options=storage_options)


def _commit_properties(commit_metadata: dict | None, write_id: str, max_commit_retries: int | None,
                       app_id: str | None = None) -> CommitProperties:
    meta = {**(commit_metadata or {}), WRITE_ID_KEY: write_id}
    return CommitProperties(
        custom_metadata=meta, max_commit_retries=max_commit_retries,
        app_transactions=[Transaction(app_id, 1, int(time.time() * 1000))] if app_id else None,
    )


def _backoff(attempt: int, base: float = 0.05, cap: float = 1.0) -> float:
    """Full jitter: a random wait up to an exponentially growing bound."""
    return random.uniform(0, min(cap, base * 2 ** attempt))


def _empty_result(uri: str, existing: DeltaTable | None, why: str) -> WriteResult:
    log.info("%s: %s; nothing committed", uri, why)
    if existing is None:
        return WriteResult(uri, None, 0, False, None)
    return WriteResult(uri, existing.version(), 0, False, _count(existing))


def write_table(
    uri: str,
    df: pl.DataFrame,
    *,
    mode: Literal["append", "overwrite"] = "append",
    replace_where: str | None = None,
    partition_by: list[str] | None = None,
    evolve_schema: bool = False,
    allow_truncate: bool = False,
    storage_options: dict | None = None,
    commit_metadata: dict[str, str] | None = None,
    schema: dict[str, pl.DataType] | None = None,
    max_attempts: int = 8,
) -> WriteResult:
    """Write ``df`` to the Delta table at ``uri`` in one commit.

    ``replace_where`` (a Delta predicate such as ``"window = '1996-06'"``) overwrites only the
    matching rows, which makes re-running a window idempotent. ``schema`` declares column types
    (applied by a checked cast before anything else); it is how a column with no values gets a type.

    An empty batch commits nothing, except an overwrite with ``allow_truncate``, which empties the
    table (or the rows matching ``replace_where``).

    Appends that lose a commit race to another writer are retried (at most ``max_attempts`` in all,
    with jittered backoff): a blind append does not depend on what it raced, and delta-rs raises
    ``CommitFailedError`` only when nothing of the attempt was committed. Overwrites are not
    re-run: a full overwrite fails on any concurrent commit, a ``replace_where`` on one that
    touched its rows (delta-rs checks which), both with :class:`WriteConflict`.
    """
    if mode not in ("append", "overwrite"):
        raise ValueError(f"{uri}: mode must be 'append' or 'overwrite', not {mode!r}")
    if replace_where is not None and mode != "overwrite":
        raise ValueError(f"{uri}: replace_where needs mode='overwrite'")
    declared = dict(schema or {})
    if declared:
        df = _apply_declared(df, declared, uri)
    batch = _to_storage(df.to_arrow(), uri)
    operation = "append" if mode == "append" else "replace_where" if replace_where else "overwrite"
    write_id = uuid.uuid4().hex
    # A full overwrite means "the table is this batch": rebasing it over a concurrent commit would
    # keep rows it never saw, so it gets no retries. A replace_where is rebased by delta-rs only
    # when the concurrent commit did not touch its predicate; appends commute with everything.
    delta_retries = 0 if operation == "overwrite" else None

    for attempt in range(1, max(1, max_attempts) + 1):
        existing = open_table(uri, storage_options)
        read_version = None if existing is None else existing.version()
        if existing is not None and partition_by:
            have = list(existing.metadata().partition_columns)
            if have != list(partition_by):
                raise SchemaMismatch(
                    f"{uri}: table is partitioned by {have}, "
                    f"the write asks for {list(partition_by)}"
                )

        data, op = batch, operation
        if batch.num_rows == 0:
            if mode != "overwrite" or not allow_truncate:
                why = ("empty batch" if mode == "append" else
                       "empty batch for an overwrite without allow_truncate=True")
                return _empty_result(uri, existing, why)
            if existing is None:
                return _empty_result(uri, None, "empty batch and no table to truncate")
            data = pa.Table.from_batches([], schema=pa.schema(existing.schema().to_arrow()))
            op = "truncate"
        elif existing is not None:
            target = pa.schema(existing.schema().to_arrow())
            data = _conform(batch, target, uri, evolve_schema)
            new_columns = [n for n in data.column_names if n not in target.names]
            _refuse_untyped(data, new_columns, declared, uri, "schema evolution never adds")
        else:
            _refuse_untyped(data, data.column_names, declared, uri, "a new table never gets")

        # Writing through the DeltaTable we checked makes its version the read version, so a
        # schema or data change committed since then is seen by delta-rs' conflict check.
        app_id = None if existing is not None else f"mlops_assets.create.{write_id}"
        try:
            write_deltalake(
                existing if existing is not None else uri,
                data,
                mode=mode,
                predicate=replace_where,
                partition_by=partition_by if existing is None else None,
                schema_mode="merge" if evolve_schema and existing is not None else None,
                storage_options=storage_options,
                commit_properties=_commit_properties(
                    commit_metadata, write_id, delta_retries, app_id),
            )
        except CommitFailedError as e:
            # delta-rs raises this only when no commit of this attempt was written.
            current = table_version(uri, storage_options)
            if operation != "append":
                log.warning("%s: %s conflicted (read version %s, now %s): %s",
                            uri, op, read_version, current, e)
                raise WriteConflict(uri, op, read_version, current, str(e)) from e
            if attempt >= max_attempts:
                raise WriteConflict(uri, f"append (gave up after {attempt} attempts)",
                                    read_version, current, str(e)) from e
            wait = _backoff(attempt)
            log.warning("%s: append attempt %d/%d lost a commit race (read version %s, now %s); "
                        "retrying in %.3fs",
                        uri, attempt, max_attempts, read_version, current, wait)
            time.sleep(wait)
            continue
        if existing is not None:
            version, table = existing.version(), existing  # delta-rs moved it to its commit
        else:
            version, table = _creation_version(uri, storage_options, app_id)
        break

    if table is None or table.version() != version:
        table = DeltaTable(uri, version=version, storage_options=storage_options)
    total = _count(table)
    log.info("%s: %s committed %d rows -> version %d (table now %d rows)",
             uri, op, data.num_rows, version, total)
    return WriteResult(uri, version, data.num_rows, True, total, op)


def delete_rows(uri: str, predicate: str, storage_options: dict | None = None,
                commit_metadata: dict[str, str] | None = None) -> WriteResult:
    """Delete the rows matching a Delta ``predicate`` in one commit. Earlier versions keep them
    (time travel); nothing is committed when no row matches."""
    table = open_table(uri, storage_options)
    if table is None:
        return WriteResult(uri, None, 0, False)
    before = table.version()
    metrics = table.delete(predicate, commit_properties=CommitProperties(custom_metadata=commit_metadata)
                           if commit_metadata else None)
    table = DeltaTable(uri, storage_options=storage_options)
    deleted = int(metrics.get("num_deleted_rows", 0) or 0)
    log.info("%s: delete where %s removed %d rows -> version %s", uri, predicate, deleted, table.version())
    return WriteResult(uri, table.version(), deleted, table.version() != before, _count(table))


def _duplicate_keys(df: pl.DataFrame, keys: list[str], limit: int = 20) -> tuple[int, str]:
    """How many keys occur more than once in ``df``, and the first of them with their counts."""
    counts = df.group_by(keys, maintain_order=True).len(name="__n").filter(pl.col("__n") > 1)
    parts = []
    for row in counts.head(limit).iter_rows(named=True):
        key = ", ".join(f"{k}={row[k]!r}" if isinstance(row[k], str) else f"{k}={row[k]}"
                        for k in keys)
        parts.append(f"{key if len(keys) == 1 else '(' + key + ')'} ×{row['__n']}")
    if counts.height > limit:
        parts.append(f"… and {counts.height - limit} more")
    return counts.height, ", ".join(parts)


def upsert_table(
    uri: str,
    df: pl.DataFrame,
    *,
    keys: list[str],
    on_duplicates: Literal["refuse", "last_wins"] = "refuse",
    evolve_schema: bool = True,
    storage_options: dict | None = None,
    commit_metadata: dict[str, str] | None = None,
    schema: dict[str, pl.DataType] | None = None,
) -> WriteResult:
    """Merge ``df`` into the table at ``uri`` on ``keys``: matches are updated, the rest inserted.

    Columns the batch lacks keep their stored values on updated rows and are null on inserted
    ones. New columns are added when ``evolve_schema`` (null for untouched rows) and refused
    otherwise; delta-rs alone would drop them without a word. Duplicate keys in the batch are
    refused (:class:`DuplicateKeys`) before any commit, or with ``on_duplicates="last_wins"`` the
    last row per key in batch order is kept. Null keys are refused: they never match, so each
    upsert would insert them again. A missing table is created from the batch.
    """
    if isinstance(keys, str):
        keys = [keys]
    if not keys:
        raise ValueError(f"{uri}: an upsert needs at least one key column")
    if on_duplicates not in ("refuse", "last_wins"):
        raise ValueError(
            f"{uri}: on_duplicates must be 'refuse' or 'last_wins', not {on_duplicates!r}")
    declared = dict(schema or {})
    if declared:
        df = _apply_declared(df, declared, uri)
    missing = [k for k in keys if k not in df.columns]
    if missing:
        raise SchemaMismatch(f"{uri}: key column(s) {missing} are not in the batch ({df.columns})")
    null_keys = {k: df.get_column(k).null_count() for k in keys if df.get_column(k).null_count()}
    if null_keys:
        raise ValueError(
            f"{uri}: upsert keys must not be null; null count per key column: {null_keys}")
    n_dup, listing = _duplicate_keys(df, keys)
    if n_dup:
        if on_duplicates == "refuse":
            raise DuplicateKeys(
                f"{uri}: {n_dup} key value(s) of {keys} occur more than once in the batch: "
                f"{listing}. Deduplicate the batch, or pass on_duplicates='last_wins' to keep the "
                "last row per key."
            )
        before = df.height
        df = df.unique(subset=keys, keep="last", maintain_order=True)
        log.warning("%s: %d duplicate key(s) in the upsert batch (%s); kept the last row of each, "
                    "dropping %d row(s)", uri, n_dup, listing, before - df.height)

    existing = open_table(uri, storage_options)
    if df.height == 0:
        return _empty_result(uri, existing, "empty upsert batch")
    if existing is None:
        log.info("%s: no table yet; the upsert creates it", uri)
        return write_table(uri, df, mode="append", storage_options=storage_options,
                           commit_metadata=commit_metadata, schema=declared or None)

    target = pa.schema(existing.schema().to_arrow())
    absent = [k for k in keys if k not in target.names]
    if absent:
        raise SchemaMismatch(f"{uri}: key column(s) {absent} are not in the table ({target.names})")
    batch = _conform(_to_storage(df.to_arrow(), uri), target, uri, evolve_schema,
                     fill_missing=False)
    new_columns = [n for n in batch.column_names if n not in target.names]
    _refuse_untyped(batch, new_columns, declared, uri, "schema evolution never adds")
    if new_columns:
        log.info("%s: upsert adds column(s) %s", uri, new_columns)

    predicate = " AND ".join(f"t.`{k}` = s.`{k}`" for k in keys)
    read_version = existing.version()
    write_id = uuid.uuid4().hex
    try:
        metrics = (
            existing.merge(
                batch, predicate, source_alias="s", target_alias="t",
                merge_schema=bool(new_columns),
                commit_properties=_commit_properties(commit_metadata, write_id, None),
            )
            .when_matched_update_all()
            .when_not_matched_insert_all()
            .execute()
        )
    except CommitFailedError as e:
        current = table_version(uri, storage_options)
        log.warning("%s: merge conflicted (read version %s, now %s): %s",
                    uri, read_version, current, e)
        raise WriteConflict(uri, "merge", read_version, current, str(e)) from e
    version = existing.version()
    total = _count(existing)
    counts = {k: metrics.get(k) for k in ("num_target_rows_inserted", "num_target_rows_updated")}
    log.info("%s: merge committed %d rows (%d inserted, %d updated) -> version %d "
             "(table now %d rows)",
             uri, batch.num_rows, counts["num_target_rows_inserted"] or 0,
             counts["num_target_rows_updated"] or 0, version, total)
    return WriteResult(uri, version, batch.num_rows, True, total, "merge", metrics)


# --------------------------------------------------------------------------------------------
# Handing data to pandas


_NS_MIN = datetime(1677, 9, 21, 0, 12, 43, 145225)
_NS_MAX = datetime(2262, 4, 11, 23, 47, 16, 854775)
_NS_SPAN = timedelta(microseconds=(2**63 - 1) // 1000)


def _as_python(value):
    """A pandas scalar as the Python object polars would give for it."""
    for attr in ("to_pytimedelta", "to_pydatetime"):
        if hasattr(value, attr):
            return getattr(value, attr)()
    return value


def to_pandas_safe(df: pl.DataFrame, context: str = "", *,
                   datetime_unit: Literal["keep", "ns"] = "keep") -> pd.DataFrame:
    """``df`` as a pandas DataFrame whose datetime columns hold every value exactly.

    With ``datetime_unit="keep"`` each column keeps its polars unit (pandas 2 holds
    ``datetime64[us]``, so 0001-01-01 and 9999-12-31 survive). ``"ns"`` is for a consumer that
    only understands nanoseconds: every value must then lie in 1677-09-21 .. 2262-04-11, and one
    that does not is refused with a ValueError naming the column and the value before pandas or
    the library behind it sees it. Either way the extremes of each column are compared after the
    conversion, so a silent change of value raises too. ``context`` (e.g. ``"drift reference"``)
    goes into the message.
    """
    where = f"{context}: " if context else ""
    temporal = {name: dtype for name, dtype in df.schema.items()
                if dtype == pl.Date or isinstance(dtype, (pl.Datetime, pl.Duration))}
    if datetime_unit not in ("keep", "ns"):
        raise ValueError(f"datetime_unit must be 'keep' or 'ns', not {datetime_unit!r}")
    if datetime_unit == "ns":
        casts = []
        for name, dtype in temporal.items():
            col = df.get_column(name)
            if isinstance(dtype, pl.Duration):
                outside = col.abs() > _NS_SPAN
                target = pl.Duration("ns")
            else:
                if isinstance(dtype, pl.Datetime) and dtype.time_zone is not None:
                    utc = col.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
                else:
                    utc = col.cast(pl.Datetime("us")) if dtype == pl.Date else col
                outside = (utc < _NS_MIN) | (utc > _NS_MAX)
                target = pl.Datetime("ns", getattr(dtype, "time_zone", None))
            bad = col.filter(outside.fill_null(False))
            if bad.len():
                raise ValueError(
                    f"{where}column {name!r} holds {bad[0]} ({dtype}; {bad.len()} such value(s)), "
                    "outside the nanosecond range 1677-09-21 .. 2262-04-11 that this consumer "
                    "needs. Null or clip such sentinel values first, or hand the data over with "
                    "datetime_unit='keep'."
                )
            if dtype != target:
                casts.append(col.cast(target))
        if casts:
            df = df.with_columns(casts)
    out = df.to_pandas()
    for name in temporal:
        col = df.get_column(name)
        for got, want in ((out[name].min(), col.min()), (out[name].max(), col.max())):
            if want is None:
                continue
            got_py = _as_python(got)
            if isinstance(got_py, datetime) and not isinstance(want, datetime):
                got_py = got_py.date()  # a Date column arrives as midnight datetimes
            if got_py != want:
                raise ValueError(
                    f"{where}column {name!r}: value {want} became {got} ({out[name].dtype}) in "
                    "pandas; refusing to hand over altered timestamps."
                )
    return out


# --------------------------------------------------------------------------------------------
# Dagster metadata


def column_schema(df: pl.DataFrame) -> dg.TableSchema:
    """A Dagster column schema for ``df``."""
    import dagster as dg

    return dg.TableSchema(
        columns=[dg.TableColumn(name, str(dtype)) for name, dtype in df.schema.items()]
    )


def table_metadata(result: WriteResult, df: pl.DataFrame) -> dict:
    """Metadata for a materialization: rows, schema, Delta version and location.

    ``rows_written`` is what this write committed: 0 when nothing was committed (an empty batch),
    so such a run never counts as new data; ``dagster/row_count`` stays the table's size.
    """
    import dagster as dg

    written = result.rows if result.committed else 0
    meta = {
        "dagster/row_count": result.table_rows if result.table_rows is not None else written,
        "dagster/column_schema": column_schema(df),
        "rows_written": written,
        "new_data": bool(result.committed and written > 0),
        "delta_version": result.version if result.version is not None else -1,
        "delta_committed": result.committed,
        "delta_operation": result.operation or "none",
    }
    if result.metrics:
        for key in ("num_target_rows_inserted", "num_target_rows_updated"):
            if result.metrics.get(key) is not None:
                meta[key.replace("num_target_", "")] = int(result.metrics[key])
    if "://" in result.uri:
        meta["table_uri"] = dg.MetadataValue.url(result.uri)
    else:
        meta["table_uri"] = dg.MetadataValue.path(result.uri)
    return meta


def markdown_table(df: pl.DataFrame, digits: int = 4) -> str:
    """A small frame as a markdown table for Dagster metadata."""
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.{digits}g}"
        return "" if v is None else str(v)

    head = "| " + " | ".join(df.columns) + " |"
    sep = "|" + "|".join("---" for _ in df.columns) + "|"
    rows = ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.iter_rows()]
    return "\n".join([head, sep, *rows])
