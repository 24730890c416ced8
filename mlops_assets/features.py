"""Feature engineering in polars: only what is known at prediction time.

For a regular time series every row gets calendar features, lags and rolling statistics of the
numeric inputs, declared differences, and the previous day's market summary from the dbt mart;
the declaration's ``features`` block picks the lags, rolling windows and optional families.
The label is the target one horizon ahead; rows whose label has not arrived yet keep a null label
and can be scored but not trained on.
"""

import polars as pl

from mlops_assets.datasets import DatasetSpec

# Columns of the feature table that are not model inputs.
KEY_COLUMNS = ("window", "label_at")
# Provenance columns of the raw table, which features do not carry.
SOURCE_COLUMNS = ("source_file", "source_sha256", "source_line", "loaded_at")


def _lagged(spec: DatasetSpec) -> list[str]:
    # `period` is the slot of the day, already covered by the calendar features.
    return [c for c in spec.numeric if c != "period"]


def encode_categories(spec: DatasetSpec, df: pl.DataFrame) -> pl.DataFrame:
    """Categorical inputs as integer codes in the declared order (unknown or null -> null), so
    the same category always has the same code whatever batch it arrives in."""
    exprs = []
    for col in spec.categorical:
        if col not in df.columns:
            continue
        declared = list(spec.categories.get(col, ())) if spec.categories else []
        if not declared:
            declared = sorted(v for v in df[col].cast(pl.String).unique().to_list() if v is not None)
        codes = {v: i for i, v in enumerate(declared)}
        exprs.append(pl.col(col).cast(pl.String).replace_strict(codes, default=None, return_dtype=pl.Int32).alias(col))
    return df.with_columns(exprs) if exprs else df


def build_features(spec: DatasetSpec, raw: pl.DataFrame, daily: pl.DataFrame | None = None) -> pl.DataFrame:
    """The feature table for ``raw``: one row per raw row, in the dataset's order."""
    if not spec.has_time:
        return _static_features(spec, raw)
    ts, h = spec.timestamp, max(spec.horizon_steps, 1)
    fd = spec.features
    lags = list(dict.fromkeys(fd.lags if fd.lags is not None else (1, 2, h)))
    rolling = list(dict.fromkeys(fd.rolling if fd.rolling is not None else (h,)))
    df = raw.sort(ts)
    exprs = [
        pl.col(ts).dt.hour().alias("hour"),
        pl.col(ts).dt.weekday().alias("day_of_week"),
    ]
    for col in _lagged(spec):
        exprs += [pl.col(col).shift(n).alias(f"{col}_lag_{n}") for n in lags]
        for n in rolling:
            exprs += [
                pl.col(col).rolling_mean(n).alias(f"{col}_mean_{n}"),
                pl.col(col).rolling_std(n).alias(f"{col}_std_{n}"),
            ]
            if fd.relative:
                exprs.append((pl.col(col) - pl.col(col).rolling_mean(n)).alias(f"{col}_vs_mean_{n}"))
    for a, b in spec.differences:
        exprs.append((pl.col(a) - pl.col(b)).alias(f"{a}_minus_{b}"))
    if fd.target_history:
        exprs += [pl.col(spec.target).cast(pl.Float64).rolling_mean(n).alias(f"{spec.target}_share_{n}")
                  for n in rolling]
    exprs += [
        pl.col(spec.target).shift(-h).alias(spec.label),
        (pl.col(ts) + spec.horizon).alias("label_at"),
    ]
    df = df.with_columns(exprs)
    if daily is not None and daily.height and fd.daily_summary:
        day_key = daily.columns[0]
        prev = daily.rename({c: f"prev_day_{c}" for c in daily.columns if c != day_key}).with_columns(
            (pl.col(day_key).cast(pl.Date) + pl.duration(days=1)).alias("_join_day")
        ).drop(day_key)
        df = df.with_columns(pl.col(ts).dt.date().alias("_join_day")).join(
            prev, on="_join_day", how="left", maintain_order="left"
        ).drop("_join_day")
    # Still in time order (sorted once above): a second sort would copy the whole table.
    return encode_categories(spec, df.drop([c for c in SOURCE_COLUMNS if c in df.columns]))


def _static_features(spec: DatasetSpec, raw: pl.DataFrame) -> pl.DataFrame:
    """Rows without time: declared inputs, categorical codes and declared differences; the
    label is the target itself (it arrives with the row)."""
    df = encode_categories(spec, raw.sort(list(spec.ordering)))
    exprs = [(pl.col(a) - pl.col(b)).alias(f"{a}_minus_{b}") for a, b in spec.differences]
    keep = [*spec.key_columns, "window", *spec.numeric, *spec.categorical, spec.target]
    keep = list(dict.fromkeys(c for c in keep if c in df.columns))
    return df.with_columns(exprs).select(*keep, *[e.meta.output_name() for e in exprs])


def feature_columns(spec: DatasetSpec, df: pl.DataFrame) -> list[str]:
    """The model's input columns, in table order."""
    skip = {spec.timestamp, spec.label, *spec.ids, *KEY_COLUMNS}
    if not spec.has_time:
        skip.add(spec.target)
        skip.update(spec.key_columns)
    return [c for c in df.columns if c not in skip]


def single_feature_auc(df: pl.DataFrame, label: str, columns: list[str], min_rows: int = 10) -> pl.DataFrame:
    """ROC AUC of each column alone as a score for ``label`` (folded to >= 0.5: a feature that
    ranks the label backwards predicts it as well), over the rows where the column is finite.

    The AUC is the Mann-Whitney statistic on average ranks (ties count one half, as in
    scikit-learn's ``roc_auc_score``), one sort per column in polars, so a million rows take a
    fraction of a second per column. Columns with fewer than ``min_rows`` finite rows, or only one
    class among them, are left out."""
    y = pl.col(label).cast(pl.Float64)
    exprs = []
    for col in columns:
        x = pl.col(col).cast(pl.Float64)
        ok = x.is_finite()
        n = ok.sum()
        n_pos = (y * ok).sum()
        n_neg = n - n_pos
        rank_sum = (x.filter(ok).rank("average") * y.filter(ok)).sum()
        auc = (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
        usable = (n >= min_rows) & (n_pos > 0) & (n_neg > 0)
        exprs.append(pl.when(usable).then(auc).otherwise(None).alias(col))
    if not exprs:
        return pl.DataFrame(schema={"feature": pl.String, "single_feature_auc": pl.Float64})
    wide = df.lazy().filter(pl.col(label).is_not_null()).select(exprs).collect()
    out = wide.unpivot(variable_name="feature", value_name="auc").drop_nulls("auc")
    return out.select(
        "feature", pl.max_horizontal(pl.col("auc"), 1 - pl.col("auc")).alias("single_feature_auc")
    ).sort("single_feature_auc", descending=True)
