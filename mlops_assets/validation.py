"""Validation schemas (pandera, polars backend) derived from a dataset declaration."""

import os

import pandera.polars as pa
import polars as pl

from mlops_assets.datasets import DatasetSpec

# Validating a LazyFrame would run schema checks only; data checks must run too.
os.environ.setdefault("PANDERA_VALIDATION_DEPTH", "SCHEMA_AND_DATA")


def raw_schema(spec: DatasetSpec) -> pa.DataFrameSchema:
    """The contract of the raw table: types, no nulls, declared ranges, one row per timestamp."""
    columns = {
        spec.timestamp: pa.Column(pl.Datetime("us", "UTC"), unique=True, nullable=False),
        "window": pa.Column(pl.String, nullable=False),
        spec.target: pa.Column(pl.Int64, pa.Check.isin([0, 1]), nullable=False),
        "source_file": pa.Column(pl.String),
        "source_sha256": pa.Column(pl.String),
        "source_line": pa.Column(pl.Int64, unique=True),
    }
    for col in spec.numeric:
        checks = [pa.Check(lambda d, c=col: d.lazyframe.select(pl.col(c).is_finite()),
                           name="finite", error="value must be finite (not NaN or inf)")]
        if col in spec.ranges:
            lo, hi = spec.ranges[col]
            checks.append(pa.Check.in_range(lo, hi))
        columns[col] = pa.Column(pl.Float64, checks, nullable=False)
    for col in spec.categorical:
        columns[col] = pa.Column(pl.String, nullable=True)
    return pa.DataFrameSchema(columns, name=f"raw_{spec.name}", strict=False)


def failure_cases(schema: pa.DataFrameSchema, df: pl.DataFrame) -> pl.DataFrame | None:
    """Validate ``df`` lazily (all errors at once); None when it passes, else one row per failure."""
    try:
        schema.validate(df, lazy=True)
    except pa.errors.SchemaErrors as exc:
        return exc.failure_cases
    return None


def describe_failures(cases: pl.DataFrame, df: pl.DataFrame, source: str | None = None, limit: int = 10) -> str:
    """A readable account of validation failures, naming column, check, value and source line."""
    lines = []
    for row in cases.head(limit).iter_rows(named=True):
        where = ""
        idx = row.get("index")
        if idx is not None and "source_line" in df.columns and 0 <= idx < df.height:
            where = f" at {df['source_file'][idx] if 'source_file' in df.columns else source}:"
            where += f" line {df['source_line'][idx]}"
        lines.append(
            f"column {row['column']!r} failed {row['check']} (value {row['failure_case']!r}){where}"
        )
    more = cases.height - limit
    return "\n".join(lines + ([f"... and {more} more"] if more > 0 else []))
