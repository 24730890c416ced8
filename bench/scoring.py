"""Batch scoring with provenance vs bare LightGBM prediction.

Ours repeats what the ``predictions`` asset (mlops_assets/defs/scoring.py) does to a window once
its rows are read: ``booster.predict`` on the feature matrix, then the prediction ids
(``mlops_assets.prediction_ids.prediction_ids``, computed column-wise with numpy), the score and
label, and the provenance columns. The Delta write (and the sort by id before it) is not included
(the write is measured under "Delta write").
Bare: ``booster.predict`` on the same matrix. Throughput ratio = bare time / ours.
"""

from __future__ import annotations

import warnings

import numpy as np
import polars as pl

from bench.common import Row, median_time



def run(features: pl.DataFrame, repeat: int, rounds: int = 100) -> list[Row]:
    import lightgbm as lgb

    from mlops_assets.datasets import ELEC2
    with warnings.catch_warnings():  # importing the asset module defines Dagster assets
        warnings.simplefilter("ignore")
        from mlops_assets.defs.scoring import prediction_ids, scored_rows
    from mlops_assets.features import feature_columns

    spec = ELEC2
    feats = feature_columns(spec, features)
    train = features.filter(pl.col(spec.label).is_not_null()).head(50_000)
    booster = lgb.train({"objective": "binary", "verbose": -1, "num_threads": 0, "seed": 0},
                        lgb.Dataset(train.select(feats).to_numpy(), train[spec.label].to_numpy()),
                        num_boost_round=rounds)
    rows = features
    name, version, run_id, feat_version, dagster_run = "elec2_bench", 7, "0" * 32, 12, "bench-run"
    keys = spec.key_columns

    def bare():
        return booster.predict(rows.select(feats).to_numpy())

    def ours():
        return scored_rows(rows, booster, feats, keys, name=name, version=version, run_id=run_id,
                           features_version=feat_version, dagster_run_id=dagster_run)

    assert np.allclose(ours()["score"].to_numpy(), bare())
    t_bare, _ = median_time(bare, repeat, warmup=True)
    t_ours, _ = median_time(ours, repeat, warmup=True)
    t_ids, _ = median_time(lambda: prediction_ids(name, version, rows, keys), repeat)
    ratio = t_bare / t_ours
    n = rows.height
    return [Row(f"batch scoring with provenance, {n:,} rows, {len(feats)} features, {rounds} trees",
                f"{n / t_ours:,.0f} rows/s", f"bare predict {n / t_bare:,.0f} rows/s", ratio,
                "ours / bare throughput", ">= 0.9x", ratio >= 0.9,
                f"prediction ids alone: {t_ids:.3f} s of {t_ours:.3f} s "
                f"({100 * t_ids / t_ours:.0f}%), computed column-wise")]
