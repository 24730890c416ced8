"""Source files: fetching the bundled Elec2 data and reading declared sources into polars.

Elec2 ships inside the ``scikit-multiflow==0.4.1`` wheel on the Python package registry. The
wheel is downloaded with pip (nothing is installed from it), its hash is checked, and the CSV
member is extracted and checked too. Nothing else is fetched at run time.

Any declared source (CSV in any dialect, Parquet, a folder or glob of such files, a Delta table) is
read the same way:

* the bytes are decoded with the declared encoding (a UTF-8 byte order mark is dropped whatever
  UTF-8 spelling is declared); an undecodable byte fails naming the file and line;
* column names are normalised to snake_case (:func:`normalise_names`), then the declared
  ``rename`` applies; the original header of every column is kept (:attr:`Batch.columns`);
* every declared column is parsed to its declared type with the declared decimal and thousands
  marks; a value that does not parse stops the read with a :class:`StructuralError` naming the
  file, column, line, what was expected and what was found (never a silent null);
* each row gets its ``window``, ``source_file``, ``source_sha256`` and ``source_line`` (1-based
  line in the file, header = line 1; row number for Parquet and Delta).
"""

from __future__ import annotations

import codecs
import csv
import glob as globlib
import hashlib
import logging
import re
import shutil
import subprocess
import sys
import tempfile
import unicodedata
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from mlops_assets.datasets import CsvDialect, DatasetSpec

log = logging.getLogger(__name__)

ELEC2_WHEEL = "scikit_multiflow-0.4.1-cp37-cp37m-manylinux1_x86_64.whl"
ELEC2_WHEEL_SHA256 = "17842a0719992871f66f2edd475c3cf947be73d16595cb28d9ec26a79cfc58de"
ELEC2_MEMBER = "skmultiflow/data/datasets/elec.csv"
ELEC2_SHA256 = "ebdfe5480ae25a43a7d054286135e3a9484697a2850d5158a333b1578c28bb97"
ELEC2_ROWS = 45_312

PROVENANCE = ("source_file", "source_sha256", "source_line")

POLARS_TYPES: dict[str, pl.DataType] = {
    "float64": pl.Float64(),
    "int64": pl.Int64(),
    "string": pl.String(),
    "bool": pl.Boolean(),
    "datetime": pl.Datetime("us", "UTC"),
    "date": pl.Date(),
}
"""The polars type of each canonical declared type name."""

_CSV_SUFFIXES = (".csv", ".tsv", ".txt")
_PARQUET_SUFFIXES = (".parquet", ".pq")
_UTF8_BOM = codecs.BOM_UTF8


class SourceError(RuntimeError):
    """A source file is missing, corrupt or unreadable."""


class StructuralError(SourceError):
    """The data does not have the declared shape: a column is missing or a value cannot be read as
    its declared type. Names the file, column, line, what was expected and what was found."""

    def __init__(self, file: str, column: str | None, line: int | None, expected: str,
                 found: str, detail: str = "", row: int | None = None):
        self.file = file
        self.column = column
        self.line = line
        self.row = row
        self.expected = expected
        self.found = found
        where = file
        if line is not None:
            where += f", line {line}"
        elif row is not None:
            where += f", row {row}"
        if column is not None:
            where += f", column {column!r}"
        super().__init__(f"{where}: expected {expected}, found {found}{detail}")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------
# Elec2


def _pip() -> list[str]:
    """A pip command: the running interpreter's, else one on PATH."""
    probe = subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True)
    if probe.returncode == 0:
        return [sys.executable, "-m", "pip"]
    for name in ("pip3", "pip"):
        found = shutil.which(name)
        if found:
            return [found]
    raise SourceError("pip is needed to fetch the Elec2 wheel and none was found.")


def fetch_elec2(dest_dir: Path) -> Path:
    """Return the verified Elec2 CSV under ``dest_dir``, downloading its wheel once if needed."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    csv_path = dest_dir / "elec2.csv"
    if csv_path.exists():
        if sha256_file(csv_path) == ELEC2_SHA256:
            return csv_path
        log.warning("%s does not match its sha256 (%s...); fetching it again", csv_path, ELEC2_SHA256[:12])
    with tempfile.TemporaryDirectory(dir=dest_dir) as tmp:
        cmd = _pip() + [
            "download", "--no-deps", "--only-binary=:all:", "--python-version", "3.7",
            "--platform", "manylinux1_x86_64", "--implementation", "cp", "-d", tmp,
            "scikit-multiflow==0.4.1",
        ]
        log.info("Fetching Elec2: %s", " ".join(cmd))
        done = subprocess.run(cmd, capture_output=True, text=True)
        wheel = Path(tmp) / ELEC2_WHEEL
        if done.returncode != 0 or not wheel.exists():
            raise SourceError(f"Could not download scikit-multiflow==0.4.1:\n{done.stderr[-2000:]}")
        if (got := sha256_file(wheel)) != ELEC2_WHEEL_SHA256:
            raise SourceError(f"{wheel.name}: sha256 {got}, expected {ELEC2_WHEEL_SHA256}")
        with zipfile.ZipFile(wheel) as zf:
            data = zf.read(ELEC2_MEMBER)
    if (got := hashlib.sha256(data).hexdigest()) != ELEC2_SHA256:
        raise SourceError(f"{ELEC2_MEMBER}: sha256 {got}, expected {ELEC2_SHA256}")
    partial = csv_path.with_suffix(".partial")
    partial.write_bytes(data)
    partial.replace(csv_path)
    log.info("Elec2 saved to %s (%d bytes, sha256 verified)", csv_path, len(data))
    return csv_path


FETCHERS = {"elec2": fetch_elec2}
"""Built-in fetchers a declaration can name as ``source: {fetch: <name>}``."""


# --------------------------------------------------------------------------------------------
# Column names


def normalise_name(name: str) -> str:
    """``"Número Cliente"`` -> ``"numero_cliente"``; ``"Tenure (months)"`` -> ``"tenure_months"``.

    Byte order marks and accents are dropped, the text is case-folded (``ß`` -> ``ss``), and every
    run of characters that are not letters or digits becomes one ``_``. Words are not split on
    capitals (``kWh`` -> ``kwh``). An empty result stays empty (the caller names such a column by
    its position).
    """
    text = unicodedata.normalize("NFKD", name.replace("\ufeff", "").strip())
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = re.sub(r"[\W_]+", "_", text.casefold())
    return text.strip("_")


def normalise_names(names: Sequence[str]) -> dict[str, str]:
    """Normalised name -> original name, in column order.

    Names that normalise alike get a suffix (``importe``, ``importe_2``) that no other column uses;
    a name that normalises to nothing becomes ``column_<position>`` (1-based).
    """
    bases = [normalise_name(n) or f"column_{i + 1}" for i, n in enumerate(names)]
    taken = set(bases)
    out: dict[str, str] = {}
    for base, original in zip(bases, names):
        name = base
        if name in out:
            k = 2
            while f"{base}_{k}" in taken or f"{base}_{k}" in out:
                k += 1
            name = f"{base}_{k}"
            taken.add(name)
        out[name] = original
    return out


# --------------------------------------------------------------------------------------------
# Reading files


@dataclass
class Batch:
    """One source read into polars."""

    frame: pl.DataFrame
    source: str
    """The file name (or Delta table URI) recorded in ``source_file``."""
    sha256: str
    columns: dict[str, str] = field(default_factory=dict)
    """Platform column name -> the column's name in the source (its header)."""
    window: str | None = None
    """The batch window name (``windows: batch``), else None."""


def _is_utf8(encoding: str) -> bool:
    return codecs.lookup(encoding).name in ("utf-8", "utf-8-sig")


def _decoded_bytes(path: Path, dialect: CsvDialect) -> tuple[bytes, str]:
    """The file as UTF-8 bytes without a byte order mark, and as text."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SourceError(f"{path}: cannot be read: {exc}") from exc
    has_bom = data.startswith(_UTF8_BOM)
    if has_bom and not _is_utf8(dialect.encoding):
        raise SourceError(
            f"{path.name}: starts with a UTF-8 byte order mark but is declared "
            f"{dialect.encoding!r}; declare encoding: utf-8")
    codec = "utf-8-sig" if _is_utf8(dialect.encoding) else dialect.encoding
    try:
        text = data.decode(codec)
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise StructuralError(
            path.name, None, line, f"text in {dialect.encoding}",
            f"byte(s) {data[exc.start:exc.end]!r} that do not decode ({exc.reason})",
            "; declare the file's encoding (e.g. cp1252, latin-1)") from exc
    text = text.removeprefix("\ufeff")
    if _is_utf8(dialect.encoding):
        return (data[len(_UTF8_BOM):] if has_bom else data), text
    return text.encode("utf-8"), text


def _lines(text: str):
    """The lines of ``text``, one at a time (the csv module reads only as many as it needs)."""
    start = 0
    while start < len(text):
        end = text.find("\n", start)
        if end < 0:
            yield text[start:]
            return
        yield text[start:end + 1]
        start = end + 1


def _header(text: str, dialect: CsvDialect) -> list[str]:
    kwargs = {"delimiter": dialect.separator}
    if dialect.quote is None:
        kwargs["quoting"] = csv.QUOTE_NONE
    else:
        kwargs["quotechar"] = dialect.quote
    try:
        return next(csv.reader(_lines(text), **kwargs))
    except StopIteration:
        return []


def _read_csv(path: Path, dialect: CsvDialect) -> tuple[pl.DataFrame, list[str]]:
    """Every column as text, and the original column names."""
    data, text = _decoded_bytes(path, dialect)
    originals = _header(text, dialect) if dialect.header else list(dialect.columns)
    del text
    if dialect.header:
        if not originals:
            raise SourceError(f"{path.name}: the file is empty; a header line was expected")
    try:
        df = pl.read_csv(
            data, has_header=dialect.header, separator=dialect.separator,
            quote_char=dialect.quote, infer_schema=False, raise_if_empty=False,
            null_values=list(dialect.null_values) or None,
        )
    except Exception as exc:  # polars names the problem; keep its words, add the file
        raise SourceError(f"{path.name}: cannot be read as CSV: {exc}") from exc
    if df.width == 0 and not dialect.header:
        df = pl.DataFrame(schema={f"column_{i}": pl.String for i in range(len(originals))})
    if df.width != len(originals):
        raise StructuralError(
            path.name, None, 1 if dialect.header else None,
            f"{len(originals)} columns ({', '.join(originals)})", f"{df.width} columns",
            f"; check the separator (declared {dialect.separator!r}) and quote character")
    df.columns = [f"_c{i}" for i in range(df.width)]
    return df, originals


def _names_for(originals: list[str], rename: dict[str, str], where: str) -> dict[str, str]:
    """Platform name -> original name, after normalisation and the declared renaming."""
    normalised = normalise_names(originals)
    out: dict[str, str] = {}
    for norm, original in normalised.items():
        name = rename.get(original, rename.get(norm, norm))
        if name in out:
            raise StructuralError(
                where, name, 1, "distinct column names after renaming",
                f"both {out[name]!r} and {original!r} named {name!r}")
        out[name] = original
    return out


def _read_raw(path: Path | str, fmt: str, dialect: CsvDialect, rename: dict[str, str]
              ) -> tuple[pl.DataFrame, dict[str, str], str, str, int, str | None]:
    """(frame with platform names, platform -> original names, source name, sha256, offset of
    source_line from the row index, Delta version label or None)."""
    if fmt == "delta":
        from deltalake import DeltaTable

        uri = str(path)
        try:
            table = DeltaTable(uri)
            version = table.version()
            df = pl.read_delta(uri, version=version)
        except Exception as exc:
            raise SourceError(f"{uri}: cannot be read as a Delta table: {exc}") from exc
        digest = hashlib.sha256(
            "\n".join([str(version), *sorted(table.file_uris())]).encode()).hexdigest()
        names = _names_for(df.columns, rename, uri)
        return df.rename(dict(zip(df.columns, names))), names, uri, digest, 1, f"v{version}"
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"{path}: no such file")
    if fmt == "parquet":
        try:
            df = pl.read_parquet(path)
        except Exception as exc:
            raise SourceError(f"{path.name}: cannot be read as Parquet: {exc}") from exc
        names = _names_for(df.columns, rename, path.name)
        return df.rename(dict(zip(df.columns, names))), names, path.name, sha256_file(path), 1, None
    df, originals = _read_csv(path, dialect)
    names = _names_for(originals, rename, path.name)
    df.columns = list(names)
    return df, names, path.name, sha256_file(path), 2 if dialect.header else 1, None


def _has_known_suffix(path: Path | str) -> bool:
    return str(path).lower().endswith(_CSV_SUFFIXES + _PARQUET_SUFFIXES)


def _format_of(path: Path | str, declared: str | None) -> str:
    if declared:
        return declared
    text = str(path).lower()
    if text.endswith(_PARQUET_SUFFIXES):
        return "parquet"
    if "://" in text or (Path(str(path)) / "_delta_log").is_dir():
        return "delta"
    return "csv"


# --------------------------------------------------------------------------------------------
# Types


def _number_text(s: pl.Series, dialect: CsvDialect) -> tuple[pl.Series, pl.Series]:
    """Number texts rewritten to the plain form (``1.299,99`` -> ``1299.99``), and a mask of the
    texts that are not numbers in the declared dialect."""
    s = s.str.strip_chars()
    s = pl.select(pl.when(s == "").then(None).otherwise(s)).to_series()
    if dialect.decimal == "." and not dialect.thousands:
        return s, pl.Series([False] * s.len())
    d = re.escape(dialect.decimal)
    if dialect.thousands:
        t = re.escape(dialect.thousands)
        whole = rf"(?:\d{{1,3}}(?:{t}\d{{3}})+|\d+)"
    else:
        whole = r"\d+"
    number = rf"^[+-]?(?:{whole}(?:{d}\d*)?|{d}\d+)(?:[eE][+-]?\d+)?$"
    special = r"^(?i)[+-]?(?:nan|inf|infinity)$"
    ok = s.str.contains(number) | s.str.contains(special)
    plain = s
    if dialect.thousands:
        plain = plain.str.replace_all(dialect.thousands, "", literal=True)
    if dialect.decimal != ".":
        plain = plain.str.replace_all(dialect.decimal, ".", literal=True)
    bad = (s.is_not_null() & ~ok.fill_null(True))
    return plain, bad


def _expected(type_name: str, dialect: CsvDialect, fmt: str | None = None) -> str:
    if type_name in ("float64", "int64"):
        what = "a number" if type_name == "float64" else "an integer"
        marks = f"decimal mark {dialect.decimal!r}"
        if dialect.thousands:
            marks += f", thousands mark {dialect.thousands!r}"
        return f"{what} ({marks})"
    if type_name == "datetime":
        return f"a date-time ({fmt})" if fmt else "an ISO date-time (e.g. 1996-05-07T00:00:00Z)"
    if type_name == "date":
        return "an ISO date (YYYY-MM-DD)"
    if type_name == "bool":
        return "true/false, yes/no or 1/0"
    return type_name


def _iso(text: str, type_name: str):
    """An ISO 8601 date-time as a UTC datetime (naive times are taken as UTC), or a date."""
    from datetime import date, datetime, timezone

    try:
        if type_name == "date":
            return date.fromisoformat(text)
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


_TRUE = ("true", "t", "yes", "y", "1")
_FALSE = ("false", "f", "no", "n", "0")


def parse_column(s: pl.Series, type_name: str, dialect: CsvDialect | None = None
                 ) -> tuple[pl.Series, pl.Series]:
    """``s`` as the declared type, and a mask of the values that could not be read as it.

    Text is parsed with the dialect's number marks; other types are cast, refusing any cast that
    would change or lose a value (e.g. 2.5 as an integer).
    """
    dialect = dialect or CsvDialect()
    want = POLARS_TYPES[type_name]
    if s.dtype == want:
        return s, pl.Series([False] * s.len())
    if s.dtype == pl.String and type_name in ("float64", "int64"):
        text, bad = _number_text(s, dialect)
        as_float = text.cast(pl.Float64, strict=False)
        if type_name == "float64":
            out = as_float
        else:
            as_int = text.cast(pl.Int64, strict=False)
            integral = as_float.is_finite() & (as_float == as_float.round()) & (as_float.abs() < 2**53)
            out = pl.select(
                pl.when(as_int.is_null() & integral).then(as_float.cast(pl.Int64, strict=False))
                .otherwise(as_int)).to_series()
        bad = bad | (text.is_not_null() & out.is_null())
        out = pl.select(pl.when(bad).then(None).otherwise(out)).to_series()
        return out.alias(s.name), bad
    if s.dtype == pl.String and type_name == "bool":
        low = s.str.strip_chars().str.to_lowercase()
        out = pl.select(
            pl.when(low.is_in(_TRUE)).then(True).when(low.is_in(_FALSE)).then(False)
            .otherwise(None)).to_series().alias(s.name)
        return out, (low.is_not_null() & (low != "") & out.is_null())
    if s.dtype == pl.String and type_name in ("datetime", "date"):
        text = s.str.strip_chars()
        text = pl.select(pl.when(text == "").then(None).otherwise(text)).to_series()
        try:  # fast path: the format polars infers from the first values
            if type_name == "datetime":
                out = text.str.to_datetime(time_unit="us", time_zone="UTC", strict=False)
            else:
                out = text.str.to_date(strict=False)
        except Exception:  # the format could not even be guessed from the first values
            out = pl.Series(s.name, [None] * s.len(), dtype=want)
        left = text.filter(text.is_not_null() & out.is_null()).unique()
        if left.len():  # other ISO 8601 spellings in the same column (Z, offsets, space, date)
            parsed = {v: _iso(v, type_name) for v in left.to_list()}
            known = {k: v for k, v in parsed.items() if v is not None}
            if known:
                extra = text.replace_strict(list(known), list(known.values()), default=None,
                                            return_dtype=want)
                out = out.fill_null(extra)
        return out.alias(s.name), (text.is_not_null() & out.is_null())
    if type_name == "datetime" and isinstance(s.dtype, pl.Datetime):
        out = (s.dt.replace_time_zone("UTC") if s.dtype.time_zone is None
               else s.dt.convert_time_zone("UTC"))
        return out.cast(want), pl.Series([False] * s.len())
    if type_name == "datetime" and s.dtype == pl.Date:
        return s.cast(pl.Datetime("us")).dt.replace_time_zone("UTC"), pl.Series([False] * s.len())
    if type_name == "string":
        return s.cast(pl.String), pl.Series([False] * s.len())
    out = s.cast(want, strict=False)
    bad = s.is_not_null() & out.is_null()
    if s.dtype.is_numeric() and want.is_numeric():
        back = out.cast(s.dtype, strict=False)
        same = (back == s) | (s.is_nan() if s.dtype.is_float() else pl.Series([False] * s.len()))
        bad = bad | (s.is_not_null() & ~same.fill_null(False))
        out = pl.select(pl.when(bad).then(None).otherwise(out)).to_series().alias(s.name)
    return out, bad


def _raise_unparsable(source: str, column: str, original: str | None, values: pl.Series,
                      bad: pl.Series, lines: pl.Series | None, expected: str) -> None:
    idx = bad.arg_true()
    first = int(idx[0])
    line = int(lines[first]) if lines is not None else first + 1
    count = idx.len()
    header = f" (header {original!r})" if original is not None and original != column else ""
    more = f"; {count - 1} more such value(s) in this column" if count > 1 else ""
    raise StructuralError(source, column, line, expected, f"{values[first]!r}{header}{more}")


def _target(s: pl.Series, spec: DatasetSpec, dialect: CsvDialect) -> tuple[pl.Series, pl.Series, str]:
    if spec.target_labels is None:
        out, bad = parse_column(s, "int64", dialect)
        return out, bad, "0 or 1"
    negative, positive = spec.target_labels
    text = s.cast(pl.String).str.strip_chars()
    out = pl.select(
        pl.when(text == positive).then(1).when(text == negative).then(0).otherwise(None)
        .cast(pl.Int64)).to_series().alias(s.name)
    bad = text.is_not_null() & (text != "") & out.is_null()
    return out, bad, f"{negative!r} or {positive!r}"


# --------------------------------------------------------------------------------------------
# Declared sources


def batch_name(path: Path | str) -> str:
    """The window name of a batch file: its normalised stem (``Batch 01.csv`` -> ``batch_01``)."""
    return normalise_name(Path(str(path)).name.split(".")[0]) or "batch"


def window_of(spec: DatasetSpec) -> pl.Expr | None:
    """The expression giving each row's window from its timestamp (None for batch windows)."""
    if spec.windows == "monthly":
        return pl.col(spec.timestamp).dt.strftime("%Y-%m")
    if spec.windows == "daily":
        return pl.col(spec.timestamp).dt.strftime("%Y-%m-%d")
    return None


def read_batch(spec: DatasetSpec, path: Path | str) -> Batch:
    """Read one source file (or Delta table) of ``spec``; see :func:`read_source`."""
    decl = spec.source
    dialect = decl.dialect if decl else CsvDialect()
    fmt = _format_of(path, None if _has_known_suffix(path) else (decl.format if decl else None))
    df, names, source, digest, offset, version = _read_raw(path, fmt, dialect, spec.rename)
    if fmt == "delta" and spec.key_columns and all(k in df.columns for k in spec.key_columns):
        df = df.sort(spec.key_columns, maintain_order=True)  # a table has no row order of its own
    lines = pl.int_range(pl.len(), dtype=pl.Int64) + offset
    df = df.with_columns(lines.alias("source_line"))
    reverse = {v: k for k, v in spec.rename.items()}

    wanted = [*spec.leading_columns, *spec.numeric, *spec.categorical, spec.target]
    rebuild = (spec.timestamp is not None and spec.timestamp not in df.columns
               and spec.start is not None and spec.step is not None)
    missing = [c for c in wanted if c not in df.columns and not (rebuild and c == spec.timestamp)]
    if missing:
        col = missing[0]
        called = f" (from source column {reverse[col]!r})" if col in reverse else ""
        raise StructuralError(
            source, col, 1 if fmt == "csv" and dialect.header else None,
            f"a column {col!r}{called}", f"columns {list(names)}",
            f"; {len(missing)} declared column(s) missing: {missing}" if len(missing) > 1 else "")

    parsed = []
    for col in dict.fromkeys(wanted):
        if rebuild and col == spec.timestamp:
            continue
        if col == spec.target:
            out, bad, expected = _target(df[col], spec, dialect)
        else:
            out, bad = parse_column(df[col], spec.column_type(col), dialect)
            expected = _expected(spec.column_type(col), dialect)
        if bad.any():
            _raise_unparsable(source, col, names.get(col), df[col], bad, df["source_line"], expected)
        parsed.append(out)
    df = df.with_columns(parsed)
    if rebuild:
        df = df.with_columns(
            pl.datetime_range(
                spec.start, spec.start + spec.step * max(df.height - 1, 0), spec.step,
                eager=True, time_unit="us", time_zone="UTC",
            ).head(df.height).alias(spec.timestamp)
        )

    window = None
    expr = window_of(spec)
    if expr is None:
        window = version if version is not None else batch_name(source)
        expr = pl.lit(window, dtype=pl.String)
    df = df.with_columns(
        expr.alias("window"),
        pl.lit(source, dtype=pl.String).alias("source_file"),
        pl.lit(digest, dtype=pl.String).alias("source_sha256"),
    ).select(*spec.leading_columns, "window", *spec.numeric, *spec.categorical, spec.target,
             *PROVENANCE)
    kept = {c: names[c] for c in df.columns if c in names}
    return Batch(df, source, digest, kept, window)


def read_source(spec: DatasetSpec, path: Path | str) -> pl.DataFrame:
    """Read a declared source file: normalise and rename columns, parse declared types, rebuild
    time where the file has none, add the window and provenance columns.

    Columns: ``[*leading, "window", *numeric, *categorical, target, "source_file",
    "source_sha256", "source_line"]`` where ``leading`` is the timestamp, the ordering column and
    the ids (:attr:`DatasetSpec.leading_columns`). ``window`` is ``YYYY-MM`` (``YYYY-MM-DD`` for
    daily windows) of the timestamp, or for ``windows: batch`` the batch name of the file
    (:func:`batch_name`) or ``v<version>`` of a Delta table. ``source_line`` is the 1-based line of
    the row in a CSV file (header = line 1; counted as one line per row, so a quoted field that
    holds a line break shifts the numbers after it), the 1-based row number in Parquet, and in Delta the
    row number once sorted by the declared key (a Delta table has no row order of its own).
    Raises :class:`StructuralError` when a declared column is missing or a value cannot be read as
    its declared type.
    """
    return read_batch(spec, path).frame


def source_paths(spec: DatasetSpec, downloads_dir: Path | None = None) -> list[Path | str]:
    """The files (or Delta table URI) the declaration points at, in name order.

    A fetched source is downloaded into ``downloads_dir`` (default: the home's downloads folder).
    A folder or glob that matches no file gives an empty list; a missing single file raises.
    """
    decl = spec.source
    if decl is None:
        raise SourceError(f"dataset {spec.name!r} declares no source")
    if decl.fetch is not None:
        if decl.fetch not in FETCHERS:
            raise SourceError(f"dataset {spec.name!r}: unknown fetcher {decl.fetch!r}; "
                              f"known: {sorted(FETCHERS)}")
        if downloads_dir is None:
            from mlops_assets.settings import home

            downloads_dir = home().downloads_dir
        return [FETCHERS[decl.fetch](Path(downloads_dir))]
    location = decl.location
    if decl.format == "delta":
        return [location]
    suffixes = _PARQUET_SUFFIXES if decl.format == "parquet" else _CSV_SUFFIXES
    if any(ch in location for ch in "*?["):
        found = [Path(p) for p in globlib.glob(location, recursive=True)]
    elif Path(location).is_dir():
        found = [p for p in Path(location).iterdir() if p.name.lower().endswith(suffixes)]
    elif Path(location).is_file():
        return [Path(location)]
    else:
        raise SourceError(f"dataset {spec.name!r}: source {location} does not exist")
    return sorted((p for p in found if p.is_file() and not p.name.startswith(".")),
                  key=lambda p: str(p))


def batches(spec: DatasetSpec, downloads_dir: Path | None = None) -> dict[str, Path | str]:
    """Window name -> source file, for ``windows: batch`` (one window per file)."""
    out: dict[str, Path | str] = {}
    for path in source_paths(spec, downloads_dir):
        name = batch_name(path)
        if spec.source and spec.source.format == "delta":
            from deltalake import DeltaTable

            name = f"v{DeltaTable(str(path)).version()}"
        if name in out:
            raise SourceError(
                f"dataset {spec.name!r}: files {out[name]} and {path} both make batch {name!r}; "
                "rename one")
        out[name] = path
    return out


def read_declared(spec: DatasetSpec, downloads_dir: Path | None = None) -> pl.DataFrame:
    """Every row of the declared source, all files concatenated in name order."""
    frames = [read_source(spec, p) for p in source_paths(spec, downloads_dir)]
    if not frames:
        raise SourceError(f"dataset {spec.name!r}: no source files at {spec.source.location}")
    return pl.concat(frames, how="vertical")


def read_file(path: Path | str, types: dict[str, str] | None = None,
              dialect: CsvDialect | None = None, fmt: str | None = None,
              rename: dict[str, str] | None = None) -> Batch:
    """Read any file without a dataset declaration: names normalised, the columns in ``types``
    parsed (the others kept as read), ``source_file``/``source_sha256``/``source_line`` added."""
    dialect = dialect or CsvDialect()
    df, names, source, digest, offset, _ = _read_raw(
        path, _format_of(path, fmt), dialect, rename or {})
    df = df.with_columns((pl.int_range(pl.len(), dtype=pl.Int64) + offset).alias("source_line"))
    for col, type_name in (types or {}).items():
        if col not in df.columns:
            raise StructuralError(source, col, 1, f"a column {col!r}", f"columns {list(names)}")
        out, bad = parse_column(df[col], type_name, dialect)
        if bad.any():
            _raise_unparsable(source, col, names.get(col), df[col], bad, df["source_line"],
                              _expected(type_name, dialect))
        df = df.with_columns(out)
    df = df.with_columns(pl.lit(source, dtype=pl.String).alias("source_file"),
                         pl.lit(digest, dtype=pl.String).alias("source_sha256"))
    df = df.select(*[c for c in df.columns if c not in PROVENANCE], *PROVENANCE)
    return Batch(df, source, digest, {c: names[c] for c in df.columns if c in names})
