"""The main job end to end on a slice of the real Elec2 data, in the session's temporary home.

Four monthly windows (May-Aug 1996) are ingested; the model trains on May-Jul and scores August.
The whole graph then runs a second time to show that reruns add versions, not rows.
"""

import dagster as dg
import polars as pl
import pytest

from mlops_assets.datasets import ELEC2
from mlops_assets.definitions import defs
from mlops_assets.defs.ingestion import RAW_KEY
from mlops_assets.settings import home
from mlops_assets.sources import fetch_elec2, read_source
from mlops_assets.tables import open_table, read_table

WINDOWS = ("1996-05", "1996-06", "1996-07", "1996-08")
RANGE_TAGS = {
    "dagster/asset_partition_range_start": "1996-05-01",
    "dagster/asset_partition_range_end": "1996-08-01",
}


def _run(instance, selection, tags=None):
    job = defs().resolve_implicit_global_asset_job_def()
    config = {"ops": {"hyperparameters": {"config": {"n_trials": 4}}}}
    has_tuning = dg.AssetKey("hyperparameters") in selection
    result = job.execute_in_process(
        instance=instance, asset_selection=list(selection), tags=tags or {},
        run_config=config if has_tuning else None,
    )
    assert result.success
    return result


def _meta(instance, key) -> dict:
    event = instance.get_latest_materialization_event(dg.AssetKey(key))
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def _delta(*parts) -> str:
    return "/".join([home().delta_root, *parts])


@pytest.fixture(scope="module")
def rounds():
    """Materialize everything twice; yield the instance and per-round table versions."""
    instance = dg.DagsterInstance.get()
    graph = defs().resolve_asset_graph()
    rest = [k for k in graph.materializable_asset_keys if k != RAW_KEY]
    versions = []
    for _ in range(2):
        _run(instance, [RAW_KEY], RANGE_TAGS)
        _run(instance, rest)
        versions.append({
            name: open_table(_delta(*name.split("/"))).version()
            for name in ("raw/elec2", "features/elec2", "training_set/elec2", "predictions/elec2")
        })
    yield instance, versions


def test_raw_rows_match_the_source_file(rounds):
    source = read_source(ELEC2, fetch_elec2(home().downloads_dir))
    expected = source.filter(pl.col("window").is_in(WINDOWS))
    raw = read_table(_delta("raw", "elec2"))
    assert raw.height == expected.height == 1200 + 1440 + 1488 + 1488
    assert raw["source_line"].sort().to_list() == expected["source_line"].sort().to_list()
    assert raw["source_sha256"].unique().to_list() == [
        "ebdfe5480ae25a43a7d054286135e3a9484697a2850d5158a333b1578c28bb97"
    ]
    assert raw["ts"].min().isoformat().startswith("1996-05-07T00:00")


def test_reruns_add_versions_without_duplicating_rows(rounds):
    _, versions = rounds
    first, second = versions
    for name in first:
        assert second[name] > first[name], name
    raw = read_table(_delta("raw", "elec2"))
    assert raw["ts"].n_unique() == raw.height
    preds = read_table(_delta("predictions", "elec2"))
    assert preds["prediction_id"].n_unique() == preds.height


def test_training_set_records_its_inputs_and_splits_by_time(rounds):
    instance, _ = rounds
    meta = _meta(instance, "training_set")
    assert meta["scoring_window"] == "1996-08"
    assert meta["train_windows"] == "1996-05, 1996-06, 1996-07"
    features_version = open_table(_delta("features", "elec2")).version()
    assert meta["features_delta_version"] == features_version
    assert meta["raw_delta_version"] == open_table(_delta("raw", "elec2")).version()
    ts = read_table(_delta("training_set", "elec2"))
    order = ts.sort("ts")["split"].to_list()
    # train rows come first, then valid, then holdout: a split by time
    assert order.index("valid") > max(i for i, s in enumerate(order) if s == "train")
    assert order.index("holdout") > max(i for i, s in enumerate(order) if s == "valid")
    # embargo: no training label lies in the scoring window
    assert str(ts["label_at"].max()) < "1996-08-01"


def test_model_is_registered_with_champion_alias_and_beats_chance(rounds):
    instance, _ = rounds
    from mlflow import MlflowClient

    meta = _meta(instance, "model")
    client = MlflowClient(home().mlflow_tracking_uri, home().mlflow_tracking_uri)
    champion = client.get_model_version_by_alias("elec2_lightgbm", "champion")
    assert int(champion.version) == 1  # the first model; the identical retrain does not beat it
    assert meta["model_version"] == 2
    run = client.get_run(meta["mlflow_run_id"])
    assert run.data.tags["dagster_run_id"]
    assert run.data.params["best_iteration"]
    # The late-July holdout is a hard fortnight (AUC 0.55-0.6 measured); August, the scored
    # window, is checked in test_predictions_carry_provenance.
    assert meta["holdout_auc"] > 0.52
    assert meta["valid_auc"] > 0.6
    champ = _meta(instance, "champion")
    assert champ["champion_version"] == 1
    promotions = read_table(_delta("registry", "promotions"))
    assert promotions.sort("decided_at")["decision"].to_list() == ["promoted", "kept champion"]


def test_predictions_carry_provenance(rounds):
    instance, _ = rounds
    preds = read_table(_delta("predictions", "elec2"))
    assert set(preds["window"].unique()) == {"1996-08"}
    assert preds.height == 1488  # August's half-hours, scored once by the champion
    assert set(preds["model_version"].unique()) == {1}
    for col in ("prediction_id", "model_name", "mlflow_run_id", "features_version", "score"):
        assert preds[col].null_count() == 0, col
    assert preds["score"].is_between(0, 1).all()
    labelled = preds.join(read_table(_delta("features", "elec2")).select("ts", "price_up_ahead"), on="ts")
    labelled = labelled.drop_nulls("price_up_ahead")
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(labelled["price_up_ahead"], labelled["score"]) > 0.6


def test_drift_report_is_written_with_a_verdict(rounds):
    instance, _ = rounds
    from pathlib import Path

    meta = _meta(instance, "drift_report")
    assert meta["window"] == "1996-08"
    assert meta["verdict"] in ("DRIFT", "no drift")
    assert Path(meta["report"]).exists() and Path(meta["report"]).stat().st_size > 10_000
    assert meta["report_url"].startswith("http://127.0.0.1:5000/#/experiments/")  # served by MLflow
    drift = read_table(_delta("monitoring", "drift"))
    assert set(drift["column"]) >= set(ELEC2.numeric)
    assert drift.height == len(ELEC2.numeric)  # replaced, not duplicated, by the second run


def test_every_table_asset_reports_rows_schema_and_version(rounds):
    instance, _ = rounds
    for key in ("features", "training_set", "predictions", "drift_report"):
        meta = _meta(instance, key)
        assert meta["dagster/row_count"] > 0, key
        assert meta["dagster/column_schema"].columns, key
        assert meta["delta_version"] >= 1, key
