"""The Evidently HTML drift report, for people to read.

The numbers that decide anything come from :mod:`mlops_assets.drift`; this file only renders a
sampled Evidently 0.7 ``DataDriftPreset`` with the same methods (normed Wasserstein for numeric,
Jensen-Shannon for categorical) so the pictures agree with the table. Evidently is imported inside
the function: it takes about 8 s to import.

Only the declared feature columns travel to pandas, each cast to Float64 (numeric) or String
(categorical), so timestamps outside pandas' nanosecond range never reach it. Columns Evidently
would reject (missing on a side, no usable value on a side, wrong dtype) are left out of the
HTML; the drift table from :func:`mlops_assets.drift.detect_drift` still lists them with a reason.
"""

from __future__ import annotations

import html
import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import polars as pl

log = logging.getLogger(__name__)


def _sample(frame: pl.DataFrame, rows: int, seed: int) -> pl.DataFrame:
    if frame.height <= rows:
        return frame
    return frame.sample(n=rows, seed=seed)


def _usable(frame: pl.DataFrame, name: str, kind: str) -> str | None:
    """Why Evidently cannot take this column from this frame, or None when it can."""
    if name not in frame.columns:
        return "missing"
    s = frame.get_column(name)
    if kind == "numeric":
        if s.dtype == pl.Null:
            return "all null"
        if not (s.dtype.is_numeric() or s.dtype == pl.Boolean):
            return f"dtype {s.dtype} is not numeric"
        s = s.cast(pl.Float64)
        if s.filter(s.is_finite()).len() == 0:
            return "no finite value"
        return None
    if s.dtype.is_float():
        s = s.fill_nan(None)
    if s.null_count() == s.len():
        return "all null"
    try:
        s.head(1).cast(pl.String)
    except pl.exceptions.PolarsError:
        return f"dtype {s.dtype} has no String form"
    return None


def _fallback_html(path: Path, message: str, dropped: dict[str, str]) -> Path:
    items = "".join(f"<li>{html.escape(k)}: {html.escape(v)}</li>" for k, v in dropped.items())
    path.write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>Drift report</title></head>"
        f"<body><h1>Drift report</h1><p>{html.escape(message)}</p>"
        + (f"<ul>{items}</ul>" if items else "")
        + "</body></html>",
        encoding="utf-8",
    )
    return path


def write_evidently_report(
    reference: pl.DataFrame,
    current: pl.DataFrame,
    numeric: Sequence[str],
    categorical: Sequence[str],
    path: Path,
    sample_rows: int = 20_000,
    seed: int = 0,
    *,
    numeric_threshold: float = 0.1,
    categorical_threshold: float = 0.1,
    drift_share: float = 0.5,
) -> Path:
    """Write a self-contained Evidently data drift report (no CDN) to ``path``; return ``path``.

    Each side is sampled down to ``sample_rows`` rows (deterministic for a given ``seed``).
    When nothing is left to compare (an empty side, no usable column) a short HTML page says so
    instead; this function does not raise on the data.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    dropped: dict[str, str] = {}
    keep_num: list[str] = []
    keep_cat: list[str] = []
    for kind, names, keep in (("numeric", numeric, keep_num), ("categorical", categorical, keep_cat)):
        for name in dict.fromkeys(names):
            why = [
                f"{w} in {side}"
                for side, frame in (("reference", reference), ("current", current))
                if (w := _usable(frame, name, kind)) is not None
            ]
            if why:
                dropped[name] = "; ".join(why)
            else:
                keep.append(name)
    if dropped:
        log.info("drift report leaves out columns Evidently cannot compare: %s", dropped)

    if reference.height == 0 or current.height == 0:
        empty = " and ".join(s for s, f in (("reference", reference), ("current", current)) if f.height == 0)
        return _fallback_html(path, f"Nothing to compare: the {empty} frame has no rows.", dropped)
    if not (keep_num or keep_cat):
        return _fallback_html(path, "No column could be compared.", dropped)

    def to_pandas(frame: pl.DataFrame):
        frame = _sample(frame, sample_rows, seed)
        exprs = [pl.col(c).cast(pl.Float64) for c in keep_num]
        exprs += [
            (pl.col(c).fill_nan(None) if frame.schema[c].is_float() else pl.col(c)).cast(pl.String)
            for c in keep_cat
        ]
        return frame.select(exprs).to_pandas()

    os.environ.setdefault("DO_NOT_TRACK", "true")
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=keep_num, categorical_columns=keep_cat)
    preset = DataDriftPreset(
        columns=keep_num + keep_cat,
        drift_share=drift_share,
        num_method="wasserstein",
        cat_method="jensenshannon",
        num_threshold=numeric_threshold,
        cat_threshold=categorical_threshold,
    )
    with warnings.catch_warnings():
        # Evidently's plots divide by zero on constant columns; the HTML is still right.
        warnings.simplefilter("ignore", RuntimeWarning)
        snapshot = Report([preset], include_tests=False).run(
            current_data=Dataset.from_pandas(to_pandas(current), data_definition=definition),
            reference_data=Dataset.from_pandas(to_pandas(reference), data_definition=definition),
        )
        snapshot.save_html(str(path))
    return path
