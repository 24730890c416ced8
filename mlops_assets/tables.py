"""The one path through which every Delta table is written and read.

Writes enforce the table's schema: columns missing from a batch are filled with nulls of the
table's type, safe widenings (int32 -> int64, float32 -> float64, null -> any) are cast and logged,
and any other type change is refused with a message naming the column and both types. New columns
are added only when the caller asks for schema evolution. An empty batch commits nothing.
Every write is a single Delta commit, so a table is always at its old or its new version.
"""

import logging
from dataclasses import dataclass
from typing import Literal

import polars as pl
import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import TableNotFoundError

import dagster as dg

log = logging.getLogger(__name__)


class SchemaMismatch(ValueError):
    """A batch does not fit the table it is written to."""


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
    """Rows in the whole table after the write."""


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
    """Read a Delta table, optionally as of an earlier version (time travel)."""
    if open_table(uri, storage_options) is None:
        raise FileNotFoundError(f"No Delta table at {uri}: materialize the asset that writes it first.")
    return pl.read_delta(uri, version=version, storage_options=storage_options)


_WIDENINGS = {
    (pa.int8(), pa.int16()), (pa.int8(), pa.int32()), (pa.int8(), pa.int64()),
    (pa.int16(), pa.int32()), (pa.int16(), pa.int64()), (pa.int32(), pa.int64()),
    (pa.float32(), pa.float64()), (pa.int32(), pa.float64()), (pa.int16(), pa.float64()),
}


def _conform(batch: pa.Table, target: pa.Schema, uri: str, evolve: bool) -> pa.Table:
    """Cast ``batch`` to the table schema ``target``, refusing unsafe changes."""
    extra = [name for name in batch.column_names if name not in target.names]
    if extra and not evolve:
        raise SchemaMismatch(
            f"{uri}: batch has columns {extra} that the table lacks. "
            "Declare them (schema evolution) to add them; columns are never dropped silently."
        )
    columns, fields = [], []
    for fld in target:
        if fld.name not in batch.column_names:
            columns.append(pa.nulls(batch.num_rows, fld.type))
            fields.append(fld)
            continue
        col = batch.column(fld.name)
        if col.type != fld.type:
            if pa.types.is_null(col.type) or (col.type, fld.type) in _WIDENINGS:
                log.info("%s: casting column %s from %s to %s", uri, fld.name, col.type, fld.type)
            elif pa.types.is_dictionary(col.type) or pa.types.is_large_string(col.type) or (
                pa.types.is_timestamp(col.type) and pa.types.is_timestamp(fld.type)
                and col.type.tz == fld.type.tz
            ):
                pass  # representation only (categorical/enum, string width, time unit)
            else:
                raise SchemaMismatch(
                    f"{uri}: column {fld.name!r} is {col.type} in the batch but {fld.type} in "
                    "the table; refusing to change its type."
                )
            col = col.cast(fld.type)
        columns.append(col)
        fields.append(fld)
    for name in extra:
        columns.append(batch.column(name))
        fields.append(batch.schema.field(name))
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))


def _plain_types(batch: pa.Table) -> pa.Table:
    """Store plain strings: Delta keeps no dictionary, view or large-string types."""
    fields = []
    for f in batch.schema:
        t = f.type
        if pa.types.is_dictionary(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
            t = pa.string()
        elif pa.types.is_large_binary(t):
            t = pa.binary()
        fields.append(pa.field(f.name, t))
    return batch.cast(pa.schema(fields))


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
) -> WriteResult:
    """Write ``df`` to the Delta table at ``uri`` in one commit.

    ``replace_where`` (a Delta predicate such as ``"window = '1996-06'"``) overwrites only the
    matching rows, which makes re-running a window idempotent. An empty batch commits nothing,
    except an overwrite of the whole table with ``allow_truncate``.
    """
    batch = _plain_types(df.to_arrow())
    existing = open_table(uri, storage_options)
    if batch.num_rows == 0 and not (mode == "overwrite" and replace_where is None and allow_truncate):
        log.info("%s: empty batch, nothing committed", uri)
        version = None if existing is None else existing.version()
        return WriteResult(uri, version, 0, False, None if existing is None else _count(existing))
    if existing is not None:
        target = pa.schema(existing.schema().to_arrow())
        batch = _conform(batch, target, uri, evolve_schema)
    nulls = [f.name for f in batch.schema if pa.types.is_null(f.type)]
    if nulls:
        raise SchemaMismatch(
            f"{uri}: column(s) {nulls} have no values and no type; a table cannot get a "
            "column of type Null. Declare their types."
        )

    write_deltalake(
        uri,
        batch,
        mode=mode,
        predicate=replace_where,
        partition_by=partition_by if existing is None else None,
        schema_mode="merge" if evolve_schema and existing is not None else None,
        storage_options=storage_options,
        commit_properties=CommitProperties(custom_metadata=commit_metadata) if commit_metadata else None,
    )
    table = DeltaTable(uri, storage_options=storage_options)
    return WriteResult(uri, table.version(), batch.num_rows, True, _count(table))


def _count(table: DeltaTable) -> int:
    return pl.scan_delta(table).select(pl.len()).collect().item()


def column_schema(df: pl.DataFrame) -> dg.TableSchema:
    """A Dagster column schema for ``df``."""
    return dg.TableSchema(
        columns=[dg.TableColumn(name, str(dtype)) for name, dtype in df.schema.items()]
    )


def table_metadata(result: WriteResult, df: pl.DataFrame) -> dict:
    """Metadata for a materialization: rows, schema, Delta version and location."""
    meta = {
        "dagster/row_count": result.table_rows if result.table_rows is not None else result.rows,
        "dagster/column_schema": column_schema(df),
        "rows_written": result.rows,
        "delta_version": result.version if result.version is not None else -1,
        "delta_committed": result.committed,
    }
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
