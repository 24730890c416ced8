"""Validation schemas (pandera, polars backend) derived from a dataset declaration.

Two kinds of failure are told apart:

* **structural**: a declared column is missing, or holds values that cannot be read as its type.
  The batch cannot be trusted at all: :func:`split_valid_rows` raises one
  :class:`~mlops_assets.sources.StructuralError` naming file, column, line, expected and found.
* **row-level**: a value breaks a rule of its column (null where required, NaN, inf, out of range,
  not an allowed category) or a row repeats a key. Such rows are split off with the reason, so
  they can be quarantined (never dropped silently); :func:`quarantine_verdict` decides whether
  their share is acceptable.

null, NaN and inf are distinct failures with distinct checks (``not_null``, ``not_nan``,
``not_inf``); pandera's own ``not_nullable`` check counts NaN as null, so this module does not use
it, and :func:`failure_kind` tells NaN apart where a hand-written schema does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pandera.polars as pa
import polars as pl

from mlops_assets.datasets import DatasetSpec
from mlops_assets.sources import POLARS_TYPES, PROVENANCE, StructuralError, parse_column

# Validating a LazyFrame would run schema checks only; data checks must run too.
os.environ.setdefault("PANDERA_VALIDATION_DEPTH", "SCHEMA_AND_DATA")

QUARANTINE_COLUMNS = ("reason", "column", "value", "failures")
"""Columns :func:`split_valid_rows` adds to each quarantined row."""


@dataclass(frozen=True)
class ColumnRule:
    """The contract of one column."""

    dtype: pl.DataType
    required: bool = True
    """Nulls are failures (kind ``null``)."""
    finite: bool = True
    """For float columns: NaN (kind ``nan``) and ±inf (kind ``inf``) are failures."""
    range: tuple[float, float] | None = None
    """Closed range of allowed values (kind ``out_of_range``)."""
    categories: tuple | None = None
    """Allowed values (kind ``not_allowed``)."""


def _select(column: str, expr: pl.Expr):
    """A check function: one boolean per row, True where the row passes (nulls pass)."""
    def check(data):
        return data.lazyframe.select(expr.fill_null(True).alias(column))
    return check


def column_checks(column: str, rule: ColumnRule) -> list[pa.Check]:
    """The pandera checks of one column, one per kind of failure."""
    c = pl.col(column)
    is_float = rule.dtype.is_float()
    checks = []
    if rule.required:
        checks.append(pa.Check(_select(column, c.is_not_null()), name="not_null"))
    if is_float and rule.finite:
        checks.append(pa.Check(_select(column, ~c.is_nan()), name="not_nan"))
        checks.append(pa.Check(_select(column, ~c.is_infinite()), name="not_inf"))
    if rule.range is not None:
        lo, hi = rule.range
        inside = c.is_between(lo, hi)
        if is_float:  # NaN and inf have checks of their own
            inside = inside | ~c.is_finite()
        checks.append(pa.Check(_select(column, inside), name=f"in_range({lo}, {hi})"))
    if rule.categories is not None:
        allowed = list(rule.categories)
        checks.append(pa.Check(_select(column, c.is_in(allowed)), name="allowed_values"))
    return checks


def _first_of_key(name: str, key: tuple[str, ...]) -> pa.Check:
    """Fails every row whose key already appeared in an earlier row (the first one passes)."""
    def check(data):
        present = data.lazyframe.collect_schema().names()
        if not all(k in present for k in key):  # reported as missing columns instead
            return data.lazyframe.select(pl.repeat(True, pl.len()).alias(name))
        return data.lazyframe.select(pl.struct(list(key)).is_first_distinct().alias(name))
    return pa.Check(check, name=name)


def build_schema(name: str, rules: dict[str, ColumnRule], key: tuple[str, ...] = (),
                 provenance: bool = False) -> pa.DataFrameSchema:
    """A pandera schema from column rules; ``key`` columns are unique per row. With
    ``provenance`` the frame must also carry ``source_file``/``source_sha256``/``source_line``,
    one row per source line."""
    columns = {col: pa.Column(rule.dtype, column_checks(col, rule), nullable=True)
               for col, rule in rules.items()}
    checks = []
    if key:
        checks.append(_first_of_key(f"unique_key({', '.join(key)})", tuple(key)))
    if provenance:
        for col in PROVENANCE:
            dtype = pl.Int64() if col == "source_line" else pl.String()
            columns.setdefault(col, pa.Column(dtype, column_checks(col, ColumnRule(dtype)),
                                              nullable=True))
        checks.append(_first_of_key("one_row_per_source_line", ("source_file", "source_line")))
    return pa.DataFrameSchema(columns, checks=checks, name=name, strict=False)


def raw_rules(spec: DatasetSpec) -> dict[str, ColumnRule]:
    """The column rules of the raw table of ``spec``."""
    nullable = set(spec.nullable_columns)
    rules: dict[str, ColumnRule] = {}
    for col in spec.leading_columns:
        rules[col] = ColumnRule(POLARS_TYPES[spec.column_type(col)], required=True,
                                categories=spec.categories.get(col))
    rules["window"] = ColumnRule(pl.String())
    for col in (*spec.numeric, *spec.categorical):
        rules[col] = ColumnRule(
            POLARS_TYPES[spec.column_type(col)], required=col not in nullable,
            range=spec.ranges.get(col), categories=spec.categories.get(col))
    rules[spec.target] = ColumnRule(pl.Int64(), categories=(0, 1))
    return rules


def raw_schema(spec: DatasetSpec) -> pa.DataFrameSchema:
    """The contract of the raw table: declared types, nulls only where declared, finite numbers,
    declared ranges and categories, a binary target, one row per key and per source line."""
    return build_schema(f"raw_{spec.name}", raw_rules(spec), key=spec.key_columns, provenance=True)


# --------------------------------------------------------------------------------------------
# Failures


def failure_kind(check: str | None, value: str | None = None) -> str:
    """The kind of a pandera failure: null, nan, inf, out_of_range, not_allowed, duplicate_key,
    duplicate_source_line, wrong_type, missing_column, or the check's own name."""
    check = check or ""
    if check == "not_nullable":  # pandera's own check counts NaN as null
        return "nan" if value is not None and value.lower() == "nan" else "null"
    fixed = {"not_null": "null", "not_nan": "nan", "not_inf": "inf",
             "allowed_values": "not_allowed", "column_in_dataframe": "missing_column",
             "one_row_per_source_line": "duplicate_source_line",
             "field_uniqueness": "duplicate_key", "multiple_fields_uniqueness": "duplicate_key"}
    if check in fixed:
        return fixed[check]
    for prefix, kind in (("in_range", "out_of_range"), ("isin", "not_allowed"),
                         ("unique_key", "duplicate_key"), ("dtype(", "wrong_type"),
                         ("greater_than", "out_of_range"), ("less_than", "out_of_range")):
        if check.startswith(prefix):
            return kind
    return check


def failure_cases(schema: pa.DataFrameSchema, df: pl.DataFrame) -> pl.DataFrame | None:
    """Validate ``df`` lazily (all errors at once); None when it passes, else one row per failure
    with pandera's columns (``failure_case``, ``schema_context``, ``column``, ``check``,
    ``check_number``, ``index``) and ``kind`` (see :func:`failure_kind`)."""
    try:
        schema.validate(df, lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
        kinds = [failure_kind(c, v) for c, v in zip(cases["check"].to_list(),
                                                    cases["failure_case"].to_list())]
        return cases.with_columns(pl.Series("kind", kinds, dtype=pl.String))
    return None


def _where(df: pl.DataFrame, idx: int | None, source: str | None) -> tuple[str, int | None, int | None]:
    """(file, line, row) of row ``idx`` of ``df``."""
    file = source
    if idx is not None and 0 <= idx < df.height:
        if "source_file" in df.columns and df["source_file"][idx] is not None:
            file = df["source_file"][idx]
        if "source_line" in df.columns and df["source_line"][idx] is not None:
            return file or "data frame", int(df["source_line"][idx]), None
        return file or "data frame", None, idx + 1
    if file is None and "source_file" in df.columns and df.height:
        file = ", ".join(str(f) for f in df["source_file"].unique(maintain_order=True).head(3))
    return file or "data frame", None, None


def describe_failures(cases: pl.DataFrame, df: pl.DataFrame, source: str | None = None,
                      limit: int = 10) -> str:
    """A readable account of validation failures, naming column, kind, check, value and source
    line."""
    lines = []
    for row in cases.head(limit).iter_rows(named=True):
        idx = row.get("index")
        file, line, number = _where(df, idx, source)
        kind = row.get("kind") or failure_kind(row["check"], row["failure_case"])
        column = row["column"]
        if column is None or row.get("schema_context") == "DataFrameSchema":
            column = "(row)"
        at = ""
        if line is not None:
            at = f" at {file}: line {line}"
        elif number is not None:
            at = f" at {file}: row {number}"
        lines.append(f"column {column!r} failed {row['check']} ({kind}; value "
                     f"{row['failure_case']!r}){at}")
    more = cases.height - limit
    return "\n".join(lines + ([f"... and {more} more"] if more > 0 else []))


def _structural(case: dict, df: pl.DataFrame) -> StructuralError:
    file, _, _ = _where(df, None, None)
    column = case["column"]
    kind = case["kind"]
    if kind == "missing_column":
        missing = case["failure_case"]
        return StructuralError(file, missing, 1, f"a column {missing!r}",
                               f"columns {[c for c in df.columns]}")
    if kind == "wrong_type":
        expected = case["check"].removeprefix("dtype(").removesuffix(")").strip("'")
        return StructuralError(file, column, None, f"type {expected}",
                               f"type {df.schema.get(column, case['failure_case'])}")
    return StructuralError(file, column, None, f"to pass {case['check']}",
                           f"{case['failure_case']!r}")


def coerce_to_schema(schema: pa.DataFrameSchema, df: pl.DataFrame) -> pl.DataFrame:
    """``df`` with every schema column cast to its type, or one :class:`StructuralError` for the
    first column that is missing or holds a value the type cannot hold (e.g. ``"abc"`` or ``2.5``
    in an integer column), naming file, column, line, expected and found."""
    casts = []
    for name, column in schema.columns.items():
        want = column.dtype.type
        if name not in df.columns:
            file, _, _ = _where(df, None, None)
            raise StructuralError(file, name, 1, f"a column {name!r} of type {want}",
                                  f"columns {df.columns}")
        have = df.schema[name]
        if have == want:
            continue
        type_name = next((t for t, d in POLARS_TYPES.items() if d == want), None)
        if type_name is not None:
            out, bad = parse_column(df[name], type_name)
        else:
            out = df[name].cast(want, strict=False)
            bad = df[name].is_not_null() & out.is_null()
        if bad.any():
            idx = int(bad.arg_true()[0])
            file, line, row = _where(df, idx, None)
            raise StructuralError(file, name, line, f"type {want}",
                                  f"{df[name][idx]!r} ({have})",
                                  f"; {int(bad.sum())} value(s) cannot be converted", row=row)
        casts.append(out.alias(name))
    return df.with_columns(casts) if casts else df


def split_valid_rows(spec_or_schema: DatasetSpec | pa.DataFrameSchema, df: pl.DataFrame
                     ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split ``df`` into rows that pass the schema and rows to quarantine.

    Columns are first cast to the schema's types (:func:`coerce_to_schema`); a missing column or
    an unconvertible value raises :class:`StructuralError`. Each quarantined row keeps all its
    columns and gets ``reason`` (the kind of its first failure: null, nan, inf, out_of_range,
    not_allowed, duplicate_key ...), ``column`` (the failing column, or the key columns),
    ``value`` (the failing value as text) and ``failures`` (every failure of the row,
    ``column: kind`` joined by ``; ``). ``source_file`` and ``source_line`` are always present
    (null when ``df`` has none). Of rows sharing a key, the first is valid and the rest are
    quarantined.
    """
    schema = raw_schema(spec_or_schema) if isinstance(spec_or_schema, DatasetSpec) else spec_or_schema
    df = coerce_to_schema(schema, df)
    extra = [pl.lit(None, pl.String).alias("source_file")] if "source_file" not in df.columns else []
    if "source_line" not in df.columns:
        extra.append(pl.lit(None, pl.Int64).alias("source_line"))
    cases = failure_cases(schema, df)
    quarantine_cols = [pl.lit(None, pl.String).alias(c) for c in QUARANTINE_COLUMNS]
    if cases is None:
        return df, df.clear().with_columns(*extra, *quarantine_cols)
    structural = cases.filter(pl.col("index").is_null())
    if structural.height:
        raise _structural(structural.row(0, named=True), df)
    # Frame-level checks (keys) name the schema as their column: name the key columns instead.
    key_label = pl.col("check").str.extract(r"^unique_key\((.*)\)$").fill_null(
        pl.when(pl.col("check") == "one_row_per_source_line")
        .then(pl.lit("source_file, source_line")).otherwise(pl.col("column")))
    per_row = (
        cases.with_columns(
            pl.when(pl.col("schema_context") == "DataFrameSchema").then(key_label)
            .otherwise(pl.col("column")).alias("column"),
            pl.col("index").cast(pl.Int64))
        .group_by("index", maintain_order=True)
        .agg(
            pl.col("kind").first().alias("reason"),
            pl.col("column").first(),
            pl.col("failure_case").first().alias("value"),
            pl.format("{}: {}", pl.col("column"), pl.col("kind")).str.join("; ").alias("failures"),
        )
        .rename({"index": "_row"})
    )
    indexed = (df.with_columns(*extra).with_row_index("_row")
               .with_columns(pl.col("_row").cast(pl.Int64)))
    quarantined = indexed.join(per_row, on="_row", how="inner").sort("_row").drop("_row")
    valid = indexed.filter(~pl.col("_row").is_in(per_row["_row"].implode())).drop("_row")
    if extra:
        valid = valid.drop([e.meta.output_name() for e in extra])
    return valid, quarantined


@dataclass(frozen=True)
class QuarantineVerdict:
    """Whether the share of quarantined rows in a batch is acceptable."""

    rows: int
    """Rows in the batch (valid + quarantined)."""
    quarantined: int
    max_share: float

    @property
    def share(self) -> float:
        return self.quarantined / self.rows if self.rows else 0.0

    @property
    def passed(self) -> bool:
        return self.share <= self.max_share

    @property
    def message(self) -> str:
        verdict = "within" if self.passed else "above"
        return (f"{self.quarantined} of {self.rows} row(s) quarantined ({self.share:.2%}), "
                f"{verdict} the allowed share of {self.max_share:.2%}")


def quarantine_verdict(quarantined: int | pl.DataFrame, rows: int,
                       max_share: float) -> QuarantineVerdict:
    """Decide on a batch of ``rows`` rows of which ``quarantined`` (a count or the quarantined
    frame) were split off: it passes when their share is at most ``max_share`` (e.g. a
    declaration's ``quarantine_max_share``)."""
    n = quarantined.height if isinstance(quarantined, pl.DataFrame) else int(quarantined)
    if not 0.0 <= max_share <= 1.0:
        raise ValueError(f"max_share must lie in [0, 1], not {max_share}")
    if n > rows:
        raise ValueError(f"{n} quarantined rows out of a batch of {rows}")
    return QuarantineVerdict(rows, n, max_share)


def features_schema(spec: DatasetSpec, df: pl.DataFrame, features: list[str]) -> pa.DataFrameSchema:
    """The contract of the feature table: one row per key, numeric inputs that are finite where
    present (nulls are allowed: lags start empty and LightGBM reads them as missing), and a
    label of 0 or 1 where it has arrived."""
    rules = {col: ColumnRule(df.schema[col], required=False, finite=True) for col in features}
    rules[spec.label] = ColumnRule(df.schema[spec.label], required=False, categories=(0, 1))
    rules["window"] = ColumnRule(pl.String())
    return build_schema(f"features_{spec.name}", rules, key=tuple(spec.key_columns))
