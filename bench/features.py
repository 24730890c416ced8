"""Feature engineering: mlops_assets.features.build_features (polars) vs the same in pandas.

Input: Elec2 resampled with noise to scale, in the raw table's shape. Both sides compute the
calendar features, lags 1, 2 and one horizon, rolling mean / std over one horizon, the deviation
from the rolling mean, the declared differences, the target's rolling share, the label one horizon
ahead and its arrival time. No previous-day join (that input comes from dbt); both sides skip it.
The pandas result is checked against the polars one before anything is timed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl

from bench.common import Row, median_time


def pandas_features(spec, raw: pd.DataFrame) -> pd.DataFrame:
    ts, h = spec.timestamp, max(spec.horizon_steps, 1)
    df = raw.sort_values(ts, kind="stable").reset_index(drop=True)
    out = {"hour": df[ts].dt.hour.astype("int8"), "day_of_week": (df[ts].dt.weekday + 1).astype("int8")}
    for col in [c for c in spec.numeric if c != "period"]:
        s = df[col]
        mean = s.rolling(h).mean()
        out[f"{col}_lag_1"] = s.shift(1)
        out[f"{col}_lag_2"] = s.shift(2)
        out[f"{col}_lag_{h}"] = s.shift(h)
        out[f"{col}_mean_{h}"] = mean
        out[f"{col}_std_{h}"] = s.rolling(h).std()
        out[f"{col}_vs_mean_{h}"] = s - mean
    for a, b in spec.differences:
        out[f"{a}_minus_{b}"] = df[a] - df[b]
    out[f"{spec.target}_share_{h}"] = df[spec.target].astype("float64").rolling(h).mean()
    out[spec.label] = df[spec.target].shift(-h).astype("Int64")
    out["label_at"] = df[ts] + spec.horizon
    return pd.concat([df, pd.DataFrame(out)], axis=1)


def _check(polars_out: pl.DataFrame, pandas_out: pd.DataFrame) -> None:
    for name in polars_out.columns:
        a = polars_out[name]
        b = pandas_out[name]
        if a.dtype.is_numeric():
            x = a.cast(pl.Float64).to_numpy()
            y = b.astype("Float64").to_numpy(dtype="float64", na_value=np.nan)
            if not np.allclose(x, y, rtol=1e-6, atol=1e-7, equal_nan=True):
                raise AssertionError(f"pandas and polars features differ in {name}")
        elif a.dtype == pl.Datetime("us", "UTC"):
            if not (a.to_pandas().values == b.values).all():
                raise AssertionError(f"pandas and polars features differ in {name}")


def run(raw: pl.DataFrame, repeat: int) -> list[Row]:
    from mlops_assets.datasets import ELEC2
    from mlops_assets.features import build_features

    raw_pd = raw.to_pandas()
    _check(build_features(ELEC2, raw), pandas_features(ELEC2, raw_pd))
    t_pl, _ = median_time(lambda: build_features(ELEC2, raw), repeat, warmup=True)
    t_pd, _ = median_time(lambda: pandas_features(ELEC2, raw_pd), repeat, warmup=True)
    return [Row(f"feature engineering, Elec2 scaled to {raw.height:,} rows",
                f"polars {t_pl:.3f} s", f"pandas {t_pd:.3f} s", t_pd / t_pl, "pandas / polars",
                "reported (~4.4x measured before)", None,
                "same columns, checked equal; pandas side converted from polars before timing")]
