"""Dataset declarations: what a table means to the platform.

A dataset is declared, not coded. A declaration (a YAML file, see ``declarations/elec2.yaml``)
names where the data comes from and how to read it (CSV dialect, Parquet, a folder or glob of
files, a Delta table), the target, the time or ordering column if there is one, the id columns,
which columns are numeric and which categorical, their types, ranges and allowed categories, how
far ahead the label lies and how rows are cut into windows. Ingestion, validation, features,
training, drift and scoring all follow from it.

``MLOPS_DATASET`` picks the dataset a code location serves: the name of a bundled declaration
(``elec2``) or the path of a YAML file.

The YAML keys (column names are platform names: the source header normalised to snake_case, then
``rename``; only ``name``, ``target`` and ``source`` are required)::

    name: churn                       # snake_case; the raw table is raw/<name>
    description: ...
    source:
      path: batches/*.csv             # file, folder, glob (relative to the YAML), or
      # uri: s3://bucket/table        # a Delta table; or  fetch: elec2  (built-in download)
      format: csv                     # csv | parquet | delta (guessed from the path if absent)
      dialect: {encoding: cp1252, separator: ";", decimal: ",", thousands: ".",
                header: true, quote: '"', columns: [...], null_values: [NA]}
    rename: {feat_1: period}          # source name (as written or normalised) -> platform name
    target: churned                   # binary label, 0/1 ...
    target_labels: [no, yes]          # ... or these [negative, positive] spellings
    timestamp: ts                     # optional time column (parsed as UTC)
    start: 1996-05-07T00:00:00        # optional: rebuild a missing time column from start + i*step
    step: 30min
    horizon: 24h                      # optional prediction horizon (needs a time column)
    order: seq                        # optional ordering column for data without time
    ids: [customer_id]                # id/entity columns
    numeric: [...]                    # model inputs, float64 unless typed int64
    categorical: [...]                # model inputs, string unless typed
    types: {tenure_months: int64}     # float64 int64 string bool datetime date
    nullable: [data_usage_gb]         # columns that may be null (default: the categorical ones)
    key: [customer_id]                # unique per row (default: ids + timestamp, else order)
    ranges: {monthly_fee: [0, 500]}
    categories: {plan: [basic, premium]}
    differences: [[a, b]]             # a_minus_b features
    windows: batch                    # monthly | daily (from the time column) | batch (per file)
    # windows: {kind: monthly, start: 1996-05-01, end: 1999-01-01}
    quarantine: {max_share: 0.02}     # largest share of a batch that may be quarantined
    features:                         # time series only; counts are in steps
      lags: [1, 2, 48]                # default [1, 2, horizon]
      rolling: [48]                   # rolling mean and std; default [horizon]
      relative: true                  # column minus its rolling mean (default true)
      target_history: true            # rolling share of positive targets (default true)
      daily_summary: true             # previous day's dbt mart summary, where one exists
    monitoring:                       # defaults of the drift and performance checks
      drift: {numeric_threshold: 0.1, categorical_threshold: 0.1, share: 0.5}
      performance: {min_auc: 0.6, max_drop: 0.1}

Only ``true``/``false`` are booleans in these files: ``yes``, ``no``, ``on`` and ``off`` stay text.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

DECLARATIONS_DIR = Path(__file__).with_name("declarations")
"""Declarations bundled with the package, one ``<name>.yaml`` each."""

WINDOW_KINDS = ("monthly", "daily", "batch")
"""``monthly``/``daily``: windows cut from the time column (``YYYY-MM`` / ``YYYY-MM-DD``).
``batch``: one window per source file (or per Delta table version), for data with no time."""

SOURCE_FORMATS = ("csv", "parquet", "delta")

# Canonical type names of a declaration and the spellings accepted for them.
_TYPE_ALIASES = {
    "float64": "float64", "float": "float64", "double": "float64", "number": "float64",
    "int64": "int64", "int": "int64", "integer": "int64",
    "string": "string", "str": "string", "text": "string", "category": "string",
    "categorical": "string",
    "bool": "bool", "boolean": "bool",
    "datetime": "datetime", "timestamp": "datetime",
    "date": "date",
}


class DeclarationError(ValueError):
    """A dataset declaration is incomplete or contradicts itself."""


@dataclass(frozen=True)
class CsvDialect:
    """How a CSV file is written."""

    encoding: str = "utf-8"
    """Any Python codec name (``utf-8``, ``cp1252``, ``latin-1``, ``utf-16`` ...). A UTF-8 byte
    order mark is dropped whichever UTF-8 spelling is declared."""
    separator: str = ","
    decimal: str = "."
    """Decimal mark of numbers (``,`` in much of Europe)."""
    thousands: str | None = None
    """Thousands mark of numbers, if the file groups digits (``.`` with a decimal comma)."""
    header: bool = True
    """Whether the first line holds the column names."""
    quote: str | None = '"'
    columns: tuple[str, ...] = ()
    """Column names for a file without a header line."""
    null_values: tuple[str, ...] = ()
    """Spellings of a missing value besides the empty field (e.g. ``NA``). ``NaN`` is a number."""

    def __post_init__(self):
        if len(self.separator) != 1:
            raise DeclarationError(f"CSV separator must be one character, not {self.separator!r}")
        if self.quote is not None and len(self.quote) != 1:
            raise DeclarationError(f"CSV quote must be one character or null, not {self.quote!r}")
        if len(self.decimal) != 1:
            raise DeclarationError(f"decimal mark must be one character, not {self.decimal!r}")
        if self.thousands is not None and (len(self.thousands) != 1 or self.thousands == self.decimal):
            raise DeclarationError(
                f"thousands mark must be one character other than the decimal mark "
                f"({self.decimal!r}), not {self.thousands!r}")
        if self.separator in (self.decimal, self.thousands) and self.quote is None:
            raise DeclarationError(
                f"the separator {self.separator!r} is also a number mark; numbers must then be "
                "quoted, so declare a quote character")
        if not self.header and not self.columns:
            raise DeclarationError("a CSV without a header line needs its column names declared "
                                   "(dialect.columns)")
        import codecs

        try:
            codecs.lookup(self.encoding)
        except LookupError as exc:
            raise DeclarationError(f"unknown encoding {self.encoding!r}") from exc


@dataclass(frozen=True)
class SourceDecl:
    """Where a dataset's rows come from."""

    location: str | None = None
    """A file, a folder, a glob (``batches/*.csv``) or a Delta table path/URI. Relative paths are
    resolved against the declaration's folder when it is loaded."""
    format: str = "csv"
    """``csv``, ``parquet`` or ``delta``."""
    fetch: str | None = None
    """A built-in fetcher instead of a location (``elec2``: downloaded and sha256-checked)."""
    dialect: CsvDialect = field(default_factory=CsvDialect)

    def __post_init__(self):
        if self.format not in SOURCE_FORMATS:
            raise DeclarationError(f"source format must be one of {SOURCE_FORMATS}, not {self.format!r}")
        if (self.location is None) == (self.fetch is None):
            raise DeclarationError("a source declares exactly one of `path` (or `uri`) and `fetch`")


@dataclass(frozen=True)
class FeatureDecl:
    """Which feature families a time series gets (see :mod:`mlops_assets.features`). Counts are
    in steps of the series; ``None`` means one horizon."""

    lags: tuple[int, ...] | None = None
    """Steps back for lagged copies of each numeric input. None: 1, 2 and one horizon."""
    rolling: tuple[int, ...] | None = None
    """Window lengths (steps) of rolling means and standard deviations. None: one horizon."""
    relative: bool = True
    """Each numeric input minus its rolling mean."""
    target_history: bool = True
    """Rolling share of positive targets (the target at t is known at t)."""
    daily_summary: bool = True
    """The previous day's summary from the dataset's dbt mart, where it has one."""

    def __post_init__(self):
        for what, steps in (("lags", self.lags), ("rolling", self.rolling)):
            if steps is not None and any(int(n) < 1 for n in steps):
                raise DeclarationError(f"features.{what} are positive step counts, not {list(steps)}")


@dataclass(frozen=True)
class MonitoringDecl:
    """Default thresholds of the drift and performance checks for this dataset (run config can
    still override them). What counts as drift depends on the data: a seasonal series moves
    every month, so its threshold is set where a move starts to matter."""

    numeric_threshold: float = 0.1
    """Normed Wasserstein distance from which a numeric column drifts."""
    categorical_threshold: float = 0.1
    """Jensen-Shannon distance from which a categorical column drifts."""
    drift_share: float = 0.5
    """Share of tested columns that must drift for the window to drift."""
    min_auc: float = 0.6
    """The performance check fails below this AUC ..."""
    max_drop: float = 0.1
    """... or this far below the model's holdout AUC at training time."""

    def __post_init__(self):
        for name in ("numeric_threshold", "categorical_threshold", "max_drop"):
            if not getattr(self, name) >= 0:
                raise DeclarationError(f"monitoring {name} must be >= 0, not {getattr(self, name)}")
        for name in ("drift_share", "min_auc"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise DeclarationError(f"monitoring {name} must lie in [0, 1], not {getattr(self, name)}")


@dataclass(frozen=True)
class DatasetSpec:
    """The declaration of one dataset. Column names are platform names (normalised, renamed)."""

    name: str
    """Short snake_case name; the raw table is ``raw/<name>``."""
    target: str
    """Binary label column (0/1) after renaming."""
    timestamp: str | None
    """Time column after renaming; rows are ordered by it and windows cut from it. None when the
    data has no time."""
    numeric: tuple[str, ...]
    """Numeric input columns after renaming."""
    categorical: tuple[str, ...] = ()
    """Categorical input columns after renaming."""
    rename: dict[str, str] = field(default_factory=dict)
    """Source column name (as in the file, or normalised) -> platform column name."""
    horizon: timedelta = timedelta(0)
    """How far ahead the label lies. The label for time t is the target at t + horizon, so it
    arrives ``horizon`` after the prediction is made."""
    step: timedelta | None = None
    """Spacing of a regular time series (lags and rolling windows are counted in steps)."""
    start: datetime | None = None
    """First timestamp, for sources without a time column whose rows are evenly spaced."""
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    """Allowed closed ranges of numeric columns, checked on ingestion."""
    differences: tuple[tuple[str, str], ...] = ()
    """Pairs (a, b) for which ``a_minus_b`` is a feature."""
    description: str = ""
    ids: tuple[str, ...] = ()
    """Id/entity columns (kept, never model inputs)."""
    order: str | None = None
    """Ordering column for data without time (e.g. a sequence number); rows are ordered by it."""
    types: dict[str, str] = field(default_factory=dict)
    """Declared types of columns (float64, int64, string, bool, datetime, date); the defaults are
    float64 for numeric, string for categorical and ids, int64 for the ordering column."""
    categories: dict[str, tuple] = field(default_factory=dict)
    """Allowed values of categorical columns."""
    nullable: tuple[str, ...] | None = None
    """Columns that may hold nulls. None: the categorical columns."""
    key: tuple[str, ...] = ()
    """Columns unique per row. Empty: ids + timestamp, else the ordering column, else none."""
    windows: str = "monthly"
    """How rows are cut into windows (one of ``WINDOW_KINDS``)."""
    window_start: date | None = None
    """First window (for time partitions)."""
    window_end: date | None = None
    """End of the last window, exclusive (for time partitions)."""
    target_labels: tuple[str, str] | None = None
    """(negative, positive) spellings of a target that is not written as 0/1."""
    quarantine_max_share: float = 0.0
    """Largest share of a batch's rows that may be quarantined before its check fails."""
    source: SourceDecl | None = None
    """Where the rows come from and how to read them."""
    features: FeatureDecl = field(default_factory=FeatureDecl)
    """Feature families of a time series."""
    monitoring: MonitoringDecl = field(default_factory=MonitoringDecl)
    """Default thresholds of the monitoring checks."""
    declared_in: str | None = None
    """The YAML file this declaration was loaded from."""

    def __post_init__(self):
        _check_spec(self)

    @property
    def horizon_steps(self) -> int:
        return int(self.horizon / self.step) if self.step else 0

    @property
    def label(self) -> str:
        """Name of the label column the model learns: the target one horizon ahead."""
        return f"{self.target}_ahead" if self.horizon else self.target

    @property
    def has_time(self) -> bool:
        return self.timestamp is not None

    @property
    def key_columns(self) -> tuple[str, ...]:
        """Columns that identify a row (unique in the raw table)."""
        if self.key:
            return self.key
        derived = self.ids + ((self.timestamp,) if self.timestamp else ())
        if derived:
            return derived
        return (self.order,) if self.order else ()

    @property
    def ordering(self) -> tuple[str, ...]:
        """Columns that put rows in order: the time, else the ordering column, else arrival
        (window, then line in the source file)."""
        if self.timestamp:
            return (self.timestamp,)
        if self.order:
            return (self.order,)
        return ("window", "source_line")

    @property
    def leading_columns(self) -> tuple[str, ...]:
        """Columns that come before ``window`` in the raw table: time, ordering column, ids."""
        out: list[str] = []
        for col in (self.timestamp, self.order, *self.ids):
            if col and col not in out:
                out.append(col)
        return tuple(out)

    @property
    def nullable_columns(self) -> tuple[str, ...]:
        return self.categorical if self.nullable is None else self.nullable

    def column_type(self, column: str) -> str:
        """The declared (or default) type of a column, as a canonical type name."""
        if column in self.types:
            return self.types[column]
        if column == self.timestamp:
            return "datetime"
        if column == self.target:
            return "int64"
        if column in self.numeric:
            return "float64"
        if column == self.order:
            return "int64"
        return "string"


def _check_spec(spec: DatasetSpec) -> None:
    where = f"dataset {spec.name!r}" + (f" ({spec.declared_in})" if spec.declared_in else "")

    def fail(msg: str):
        raise DeclarationError(f"{where}: {msg}")

    if not re.fullmatch(r"[a-z][a-z0-9_]*", spec.name or ""):
        fail("name must be snake_case (lowercase letters, digits, underscores)")
    roles: dict[str, str] = {}
    for role, cols in (("target", (spec.target,)), ("timestamp", (spec.timestamp,)),
                       ("order", (spec.order,)), ("ids", spec.ids), ("numeric", spec.numeric),
                       ("categorical", spec.categorical)):
        for col in cols:
            if col is None:
                continue
            if col in roles and not {roles[col], role} <= {"timestamp", "order"}:
                fail(f"column {col!r} is declared both {roles[col]} and {role}")
            roles.setdefault(col, role)
    for col, (lo, hi) in spec.ranges.items():
        if col not in roles:
            fail(f"range declared for {col!r}, which is not a declared column")
        if lo > hi:
            fail(f"range of {col!r} is empty: [{lo}, {hi}]")
    for col in spec.categories:
        if col not in roles:
            fail(f"categories declared for {col!r}, which is not a declared column")
    for col, type_name in spec.types.items():
        if col not in roles:
            fail(f"type declared for {col!r}, which is not a declared column")
        if type_name not in set(_TYPE_ALIASES.values()):
            fail(f"type of {col!r} is {type_name!r}; use one of {sorted(set(_TYPE_ALIASES.values()))}")
    for col in spec.numeric:
        if spec.column_type(col) not in ("float64", "int64"):
            fail(f"numeric column {col!r} has type {spec.column_type(col)}; use float64 or int64")
    for col in (*(spec.nullable or ()), *spec.key):
        if col not in roles and col not in ("window", "source_file", "source_line"):
            fail(f"{col!r} is named as nullable or key but is not a declared column")
    for a, b in spec.differences:
        if a not in spec.numeric or b not in spec.numeric:
            fail(f"difference ({a}, {b}) needs two numeric columns")
    if spec.windows not in WINDOW_KINDS:
        fail(f"windows must be one of {WINDOW_KINDS}, not {spec.windows!r}")
    if spec.windows != "batch" and not spec.timestamp:
        fail(f"{spec.windows} windows are cut from a time column; declare `timestamp`, or use "
             "windows: batch for data without time")
    if spec.horizon and not spec.timestamp:
        fail("a prediction horizon needs a time column")
    if spec.horizon and spec.step and spec.horizon % spec.step:
        fail(f"horizon {spec.horizon} is not a whole number of steps of {spec.step}")
    if spec.start is not None and spec.step is None:
        fail("`start` rebuilds the time column and needs `step`")
    if not 0.0 <= spec.quarantine_max_share <= 1.0:
        fail(f"quarantine max_share must lie in [0, 1], not {spec.quarantine_max_share}")
    if spec.target_labels is not None and len(spec.target_labels) != 2:
        fail("target_labels is [negative, positive]")
    if spec.window_start and spec.window_end and spec.window_start >= spec.window_end:
        fail("windows end before they start")


# --------------------------------------------------------------------------------------------
# Loading declarations


_TOP_KEYS = {
    "name", "description", "source", "target", "target_labels", "timestamp", "order", "ids",
    "numeric", "categorical", "rename", "types", "ranges", "categories", "nullable", "key",
    "horizon", "step", "start", "differences", "windows", "quarantine", "features", "monitoring",
}
_FEATURE_KEYS = {f.name for f in fields(FeatureDecl)}
_MONITORING_KEYS = {"drift", "performance"}
_DRIFT_KEYS = {"numeric_threshold", "categorical_threshold", "share"}
_PERFORMANCE_KEYS = {"min_auc", "max_drop"}
_SOURCE_KEYS = {"path", "uri", "format", "fetch", "dialect"}
_DIALECT_KEYS = {f.name for f in fields(CsvDialect)}
_WINDOW_KEYS = {"kind", "start", "end"}
_QUARANTINE_KEYS = {"max_share"}

_UNITS = {
    "us": "microseconds", "ms": "milliseconds", "s": "seconds", "sec": "seconds",
    "second": "seconds", "seconds": "seconds", "min": "minutes", "minute": "minutes",
    "minutes": "minutes", "h": "hours", "hour": "hours", "hours": "hours", "d": "days",
    "day": "days", "days": "days", "w": "weeks", "week": "weeks", "weeks": "weeks",
}


def parse_duration(value: Any, what: str = "duration") -> timedelta:
    """``30min``, ``24h``, ``1d``, ``2 weeks``, a number of seconds, or ``{hours: 24}``."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise DeclarationError(f"{what}: {value!r} is not a duration")
    if isinstance(value, (int, float)):
        return timedelta(seconds=value)
    if isinstance(value, dict):
        try:
            return timedelta(**{_UNITS[k]: v for k, v in value.items()})
        except (KeyError, TypeError) as exc:
            raise DeclarationError(f"{what}: {value!r} is not a duration") from exc
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]+)\s*", str(value))
    if not m or m.group(2).lower() not in _UNITS:
        raise DeclarationError(
            f"{what}: {value!r} is not a duration; write e.g. 30min, 24h, 1d, 2w")
    return timedelta(**{_UNITS[m.group(2).lower()]: float(m.group(1))})


def _as_datetime(value: Any, what: str) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        out = value
    elif isinstance(value, date):
        out = datetime(value.year, value.month, value.day)
    else:
        try:
            out = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError as exc:
            raise DeclarationError(f"{what}: {value!r} is not an ISO date or time") from exc
    if out.tzinfo is not None:  # stored as naive UTC, like the rest of the platform
        out = out.astimezone(timezone.utc).replace(tzinfo=None)
    return out


def _as_date(value: Any, what: str) -> date | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = str(value)
    if re.fullmatch(r"\d{4}-\d{2}", text):
        text += "-01"
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise DeclarationError(f"{what}: {value!r} is not an ISO date") from exc


def _names(value: Any, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise DeclarationError(f"{what} must be a list of column names, not {value!r}")
    return tuple(value)


def _mapping(value: Any, what: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise DeclarationError(f"{what} must be a mapping, not {value!r}")
    return value


def _steps(value: Any, what: str) -> list[int]:
    if not isinstance(value, (list, tuple)) or not value:
        raise DeclarationError(f"{what} is a non-empty list of step counts, not {value!r}")
    out = []
    for n in value:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise DeclarationError(f"{what}: {n!r} is not a positive whole number of steps")
        out.append(n)
    return out


def _unknown(data: dict, allowed: set[str], what: str) -> None:
    extra = sorted(set(data) - allowed)
    if extra:
        raise DeclarationError(f"{what}: unknown key(s) {extra}; allowed: {sorted(allowed)}")


def _source(data: Any, base_dir: Path | None, where: str) -> SourceDecl | None:
    if data is None:
        return None
    if isinstance(data, str):
        data = {"path": data}
    data = _mapping(data, f"{where}: source")
    _unknown(data, _SOURCE_KEYS, f"{where}: source")
    location = data.get("path", data.get("uri"))
    if "path" in data and "uri" in data:
        raise DeclarationError(f"{where}: source declares both `path` and `uri`")
    if location is not None:
        location = str(location)
        if "://" not in location and base_dir is not None and not Path(location).is_absolute():
            location = str(base_dir / location)
    fmt = data.get("format")
    if fmt is None:
        fmt = _guess_format(location) if location else "csv"
    dialect = _mapping(data.get("dialect"), f"{where}: source.dialect")
    _unknown(dialect, _DIALECT_KEYS, f"{where}: source.dialect")
    dialect = dict(dialect)
    for key in ("columns", "null_values"):
        if key in dialect:
            dialect[key] = _names(dialect[key], f"{where}: source.dialect.{key}")
    try:
        return SourceDecl(location=location, format=str(fmt).lower(), fetch=data.get("fetch"),
                          dialect=CsvDialect(**dialect))
    except (DeclarationError, TypeError) as exc:
        raise DeclarationError(f"{where}: source: {exc}") from exc


def _guess_format(location: str) -> str:
    lowered = location.lower().rstrip("/")
    if lowered.endswith((".parquet", ".pq")):
        return "parquet"
    if lowered.endswith((".csv", ".tsv", ".txt", ".csv.gz")):
        return "csv"
    if "://" in lowered or (Path(location) / "_delta_log").is_dir():
        return "delta"
    return "csv"


def spec_from_mapping(data: dict, base_dir: Path | None = None,
                      declared_in: str | None = None) -> DatasetSpec:
    """Build a :class:`DatasetSpec` from a parsed declaration (see ``declarations/*.yaml``)."""
    where = declared_in or "declaration"
    data = _mapping(data, where)
    _unknown(data, _TOP_KEYS, where)
    for required in ("name", "target", "source"):
        if data.get(required) in (None, ""):
            raise DeclarationError(f"{where}: `{required}` is required")

    windows = data.get("windows")
    if windows is None:
        windows = {"kind": "monthly" if data.get("timestamp") else "batch"}
    elif isinstance(windows, str):
        windows = {"kind": windows}
    windows = _mapping(windows, f"{where}: windows")
    _unknown(windows, _WINDOW_KEYS, f"{where}: windows")
    quarantine = _mapping(data.get("quarantine"), f"{where}: quarantine")
    _unknown(quarantine, _QUARANTINE_KEYS, f"{where}: quarantine")

    types = {}
    for col, type_name in _mapping(data.get("types"), f"{where}: types").items():
        canonical = _TYPE_ALIASES.get(str(type_name).lower())
        if canonical is None:
            raise DeclarationError(
                f"{where}: type of {col!r} is {type_name!r}; use one of "
                f"{sorted(set(_TYPE_ALIASES.values()))}")
        types[col] = canonical

    ranges = {}
    for col, bounds in _mapping(data.get("ranges"), f"{where}: ranges").items():
        if not isinstance(bounds, (list, tuple)) or len(bounds) != 2:
            raise DeclarationError(f"{where}: range of {col!r} must be [low, high], not {bounds!r}")
        ranges[col] = (float(bounds[0]), float(bounds[1]))

    categories = {}
    for col, values in _mapping(data.get("categories"), f"{where}: categories").items():
        if not isinstance(values, (list, tuple)) or not values:
            raise DeclarationError(f"{where}: categories of {col!r} must be a non-empty list")
        categories[col] = tuple(values)

    differences = []
    for pair in data.get("differences") or ():
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise DeclarationError(f"{where}: each difference is a pair [a, b], not {pair!r}")
        differences.append((str(pair[0]), str(pair[1])))

    labels = data.get("target_labels")
    if labels is not None:
        if not isinstance(labels, (list, tuple)) or len(labels) != 2:
            raise DeclarationError(f"{where}: target_labels is [negative, positive], not {labels!r}")
        labels = (str(labels[0]), str(labels[1]))

    rename = {str(k): str(v) for k, v in _mapping(data.get("rename"), f"{where}: rename").items()}

    feats = _mapping(data.get("features"), f"{where}: features")
    _unknown(feats, _FEATURE_KEYS, f"{where}: features")
    for flag in ("relative", "target_history", "daily_summary"):
        if flag in feats and not isinstance(feats[flag], bool):
            raise DeclarationError(f"{where}: features.{flag} is true or false, not {feats[flag]!r}")
    try:
        feature_decl = FeatureDecl(
            **{k: (tuple(int(n) for n in _steps(v, f"{where}: features.{k}"))
                   if k in ("lags", "rolling") else v) for k, v in feats.items()})
    except DeclarationError as e:
        raise DeclarationError(f"{where}: {e}") from None

    monitoring = _mapping(data.get("monitoring"), f"{where}: monitoring")
    _unknown(monitoring, _MONITORING_KEYS, f"{where}: monitoring")
    drift = _mapping(monitoring.get("drift"), f"{where}: monitoring.drift")
    _unknown(drift, _DRIFT_KEYS, f"{where}: monitoring.drift")
    perf = _mapping(monitoring.get("performance"), f"{where}: monitoring.performance")
    _unknown(perf, _PERFORMANCE_KEYS, f"{where}: monitoring.performance")
    try:
        monitoring_decl = MonitoringDecl(
            **{k: float(v) for k, v in {**{("drift_share" if k == "share" else k): v
                                           for k, v in drift.items()}, **perf}.items()})
    except (TypeError, ValueError) as e:
        raise DeclarationError(f"{where}: monitoring thresholds are numbers ({e})") from None
    except DeclarationError as e:
        raise DeclarationError(f"{where}: {e}") from None

    return DatasetSpec(
        name=str(data["name"]),
        target=str(data["target"]),
        timestamp=data.get("timestamp"),
        numeric=_names(data.get("numeric"), f"{where}: numeric"),
        categorical=_names(data.get("categorical"), f"{where}: categorical"),
        rename=rename,
        horizon=(parse_duration(data["horizon"], f"{where}: horizon") if data.get("horizon")
                 else timedelta(0)),
        step=parse_duration(data["step"], f"{where}: step") if data.get("step") else None,
        start=_as_datetime(data.get("start"), f"{where}: start"),
        ranges=ranges,
        differences=tuple(differences),
        description=str(data.get("description") or "").strip(),
        ids=_names(data.get("ids"), f"{where}: ids"),
        order=data.get("order"),
        types=types,
        categories=categories,
        nullable=_names(data["nullable"], f"{where}: nullable") if "nullable" in data else None,
        key=_names(data.get("key"), f"{where}: key"),
        windows=str(windows.get("kind", "monthly" if data.get("timestamp") else "batch")),
        window_start=_as_date(windows.get("start"), f"{where}: windows.start"),
        window_end=_as_date(windows.get("end"), f"{where}: windows.end"),
        target_labels=labels,
        quarantine_max_share=float(quarantine.get("max_share", 0.0)),
        source=_source(data.get("source"), base_dir, where),
        features=feature_decl,
        monitoring=monitoring_decl,
        declared_in=declared_in,
    )


def _yaml_loader():
    """A safe YAML loader where only true/false are booleans (as in YAML 1.2): category values and
    labels such as ``no``, ``yes``, ``on`` or ``off`` stay text."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
        list("tTfF"))
    return Loader


def load_declaration(path: str | Path) -> DatasetSpec:
    """Read a YAML declaration; relative source paths are taken from the file's folder."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DeclarationError(f"cannot read dataset declaration {path}: {exc}") from exc
    try:
        data = yaml.load(text, Loader=_yaml_loader())  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise DeclarationError(f"{path}: not valid YAML: {exc}") from exc
    return spec_from_mapping(data, base_dir=path.resolve().parent, declared_in=str(path))


def bundled_declarations() -> dict[str, DatasetSpec]:
    """The declarations shipped in ``mlops_assets/declarations``, by dataset name."""
    specs = {}
    for path in sorted(DECLARATIONS_DIR.glob("*.yaml")):
        spec = load_declaration(path)
        if spec.name in specs:
            raise DeclarationError(f"{path}: dataset {spec.name!r} is declared twice")
        specs[spec.name] = spec
    return specs


DATASETS = bundled_declarations()
ELEC2 = DATASETS["elec2"]


def resolve_spec(name_or_path: str) -> DatasetSpec:
    """A bundled declaration by name, or a YAML declaration by path."""
    if name_or_path in DATASETS:
        return DATASETS[name_or_path]
    if name_or_path.endswith((".yaml", ".yml")) or os.sep in name_or_path or "/" in name_or_path:
        return load_declaration(name_or_path)
    raise KeyError(
        f"MLOPS_DATASET={name_or_path!r} is not declared; known datasets: {sorted(DATASETS)}, "
        "or give the path of a YAML declaration")


def current_spec() -> DatasetSpec:
    """The dataset this code location serves, from ``MLOPS_DATASET`` (default ``elec2``): a
    bundled declaration's name or the path of a YAML declaration."""
    return resolve_spec(os.environ.get("MLOPS_DATASET", ELEC2.name))
