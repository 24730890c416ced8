"""The feature families a declaration asks for, and the monitoring defaults it sets."""

from datetime import datetime, timedelta, timezone

import numpy as np
import polars as pl
import pytest

from mlops_assets.datasets import DeclarationError, current_spec, spec_from_mapping
from mlops_assets.features import build_features, feature_columns

BASE = {
    "name": "meters", "target": "alarm", "timestamp": "ts", "numeric": ["kwh", "temp"],
    "source": "meters.csv", "step": "1h", "horizon": "3h",
}


def _raw(n: int = 30) -> pl.DataFrame:
    rng = np.random.default_rng(0)
    start = datetime(2024, 1, 1, tzinfo=timezone.utc)
    return pl.DataFrame({
        "ts": [start + timedelta(hours=i) for i in range(n)],
        "window": ["2024-01"] * n,
        "kwh": rng.normal(size=n), "temp": rng.normal(size=n),
        "alarm": rng.integers(0, 2, n),
    })


def test_default_families_are_lags_rolling_relative_and_target_history():
    spec = spec_from_mapping(BASE)
    df = build_features(spec, _raw())
    cols = feature_columns(spec, df)
    for c in ("kwh_lag_1", "kwh_lag_2", "kwh_lag_3", "kwh_mean_3", "kwh_std_3", "kwh_vs_mean_3",
              "alarm_share_3", "hour", "day_of_week"):
        assert c in cols
    assert spec.label not in cols and "label_at" not in cols
    # the label is the target one horizon (3 steps) ahead
    assert df[spec.label].to_list()[:5] == df["alarm"].to_list()[3:8]


def test_declared_families_replace_the_defaults_with_the_values_they_name():
    spec = spec_from_mapping({**BASE, "features": {
        "lags": [1, 24], "rolling": [4, 12], "relative": False, "target_history": False}})
    raw = _raw()
    df = build_features(spec, raw)
    cols = feature_columns(spec, df)
    assert {"kwh_lag_1", "kwh_lag_24", "kwh_mean_4", "kwh_std_12"} <= set(cols)
    assert not any("_vs_mean_" in c or "_share_" in c or c == "kwh_lag_2" for c in cols)
    # each value is what it claims: the 24-step lag and the 4-step rolling mean
    assert df["kwh_lag_24"][24] == raw["kwh"][0]
    assert df["kwh_mean_4"][10] == pytest.approx(float(raw["kwh"][7:11].mean()))


def test_feature_and_monitoring_blocks_refuse_mistakes_clearly():
    with pytest.raises(DeclarationError, match=r"features: unknown key\(s\) \['lag'\]"):
        spec_from_mapping({**BASE, "features": {"lag": [1]}})
    with pytest.raises(DeclarationError, match="features.lags: 0 is not a positive whole number"):
        spec_from_mapping({**BASE, "features": {"lags": [0]}})
    with pytest.raises(DeclarationError, match="features.relative is true or false"):
        spec_from_mapping({**BASE, "features": {"relative": "no"}})
    with pytest.raises(DeclarationError, match="monitoring drift_share must lie in"):
        spec_from_mapping({**BASE, "monitoring": {"drift": {"share": 1.5}}})
    with pytest.raises(DeclarationError, match=r"monitoring.drift: unknown key\(s\) \['threshold'\]"):
        spec_from_mapping({**BASE, "monitoring": {"drift": {"threshold": 0.2}}})


def test_monitoring_thresholds_come_from_the_declaration():
    spec = spec_from_mapping({**BASE, "monitoring": {
        "drift": {"numeric_threshold": 0.4, "share": 0.3}, "performance": {"min_auc": 0.55}}})
    m = spec.monitoring
    assert (m.numeric_threshold, m.drift_share, m.min_auc) == (0.4, 0.3, 0.55)
    assert (m.categorical_threshold, m.max_drop) == (0.1, 0.1)  # the defaults
    # and they are the defaults of the checks' run config in the code location
    from mlops_assets.defs.monitoring import DriftConfig, PerformanceConfig

    elec2 = current_spec().monitoring
    assert DriftConfig().numeric_threshold == elec2.numeric_threshold
    assert DriftConfig().drift_share == elec2.drift_share
    assert PerformanceConfig().min_auc == elec2.min_auc


def test_single_feature_auc_matches_scikit_learn_with_ties_and_non_finite_values():
    from sklearn.metrics import roc_auc_score

    from mlops_assets.features import single_feature_auc

    rng = np.random.default_rng(1)
    n = 5_000
    y = rng.integers(0, 2, n)
    leak = y + rng.normal(0, 0.05, n)                      # nearly the label
    backwards = -leak                                      # the same, ranked the other way
    ties = rng.integers(0, 4, n).astype(float)             # heavy ties
    holes = rng.normal(size=n)
    holes[::7] = np.nan
    holes[::11] = np.inf
    df = pl.DataFrame({"y": y, "leak": leak, "backwards": backwards, "ties": ties, "holes": holes,
                       "constant_class": np.ones(n)}).with_columns(
        pl.when(pl.int_range(pl.len()) % 13 == 0).then(None).otherwise(pl.col("y")).alias("y"))
    got = dict(single_feature_auc(df, "y", ["leak", "backwards", "ties", "holes"]).iter_rows())
    labelled = df.filter(pl.col("y").is_not_null())
    for col in ("leak", "backwards", "ties", "holes"):
        x, t = labelled[col].to_numpy(), labelled["y"].to_numpy()
        ok = np.isfinite(x)
        auc = roc_auc_score(t[ok], x[ok])
        assert got[col] == pytest.approx(max(auc, 1 - auc), abs=1e-12)
    assert got["leak"] > 0.99 and got["backwards"] == pytest.approx(got["leak"])
    # one class only among the rows: no AUC, no crash
    one_class = df.with_columns(pl.lit(1).alias("y"))
    assert single_feature_auc(one_class, "y", ["leak"]).height == 0


def test_the_leakage_check_samples_a_large_table_and_still_finds_the_leak(tmp_path, monkeypatch):
    """Run through Dagster on a real Delta feature table: above the sample size the check reads
    every k-th labelled row only, and a feature that restates the label still fails it."""
    import dagster as dg
    from model_lab import synthetic_features

    from mlops_assets.defs import features as feature_defs
    from mlops_assets.resources import Lake
    from mlops_assets.tables import write_table

    monkeypatch.setattr(feature_defs, "LEAKAGE_SAMPLE_ROWS", 150)
    spec = current_spec()
    lake = Lake(root_uri=str(tmp_path / "delta"))
    base = synthetic_features().with_columns(   # 800 rows; the last 40 not labelled yet
        pl.when(pl.int_range(pl.len()) >= 760).then(None).otherwise(pl.col(spec.label)).alias(spec.label))
    noise = np.random.default_rng(3).normal(0, 0.1, base.height)

    def check(frame):
        write_table(lake.uri("features", spec.name), frame, mode="overwrite", evolve_schema=True)
        result = dg.materialize([feature_defs.features, feature_defs.no_single_feature_leak],
                                selection=dg.AssetSelection.checks(feature_defs.no_single_feature_leak),
                                resources={"lake": lake}, instance=dg.DagsterInstance.ephemeral())
        (evaluation,) = result.get_asset_check_evaluations()
        return evaluation.passed, {k: v.value for k, v in evaluation.metadata.items()}

    passed, meta = check(base)
    assert passed and meta["labelled_rows"] == 760 and 150 <= meta["rows_used"] < 300
    assert meta["strongest_auc"] < 0.95
    leaky = base.with_columns((pl.col(spec.label).fill_null(0) + pl.Series(noise)).alias("label_echo"))
    passed, meta = check(leaky)
    assert not passed and meta["strongest_feature"] == "label_echo" and meta["strongest_auc"] > 0.95
    assert meta["rows_used"] < 760
    passed, meta = check(base.with_columns(pl.lit(None, pl.Int64).alias(spec.label)))  # no labels yet
    assert passed and meta["rows_used"] == 0 and "no feature could be tested" in meta["note"]
