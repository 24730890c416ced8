"""Scoring: the champion's predictions for the latest window, with their provenance."""

from datetime import datetime, timezone

import dagster as dg
import polars as pl

from mlops_assets.audit import lineage_row, provenance, record_model_lineage
from mlops_assets.datasets import current_spec
from mlops_assets.defs.features import features
from mlops_assets.prediction_ids import prediction_ids
from mlops_assets.resources import Lake, MlflowTracking
from mlops_assets.tables import scan_table, table_metadata, table_version, write_table
from mlops_assets.versions import code_version_for, delta_data_version

SPEC = current_spec()
THRESHOLD = 0.5


def scored_rows(rows: pl.DataFrame, booster, feats: list[str], keys: tuple[str, ...], *, name: str,
                version: int, run_id: str, features_version: int | None, dagster_run_id: str) -> pl.DataFrame:
    """The predictions for ``rows`` with their provenance: id (see :mod:`mlops_assets.prediction_ids`),
    model, MLflow run, feature version."""
    score = booster.predict(rows.select(feats).to_numpy())
    carried = [*keys, "window", *(["label_at"] if "label_at" in rows.columns else [])]
    return rows.select(list(dict.fromkeys(carried))).with_columns(
        prediction_ids(name, version, rows, keys),
        pl.Series("score", score),
        pl.Series("predicted_label", (score >= THRESHOLD).astype("int64")),
        pl.lit(name).alias("model_name"),
        pl.lit(version, pl.Int64).alias("model_version"),
        pl.lit(run_id).alias("mlflow_run_id"),
        pl.lit(features_version, pl.Int64).alias("features_version"),
        pl.lit(datetime.now(timezone.utc)).cast(pl.Datetime("us", "UTC")).alias("scored_at"),
        pl.lit(dagster_run_id).alias("dagster_run_id"),
    ).select("prediction_id", pl.all().exclude("prediction_id"))


@dg.asset(group_name="scoring", kinds={"lightgbm", "delta"}, deps=[features],
          code_version=code_version_for(__name__, "mlops_assets.prediction_ids",
                                        libraries=("lightgbm",)))
def predictions(context: dg.AssetExecutionContext, champion: dict, lake: Lake, mlflow: MlflowTracking) -> dg.MaterializeResult:
    """The champion's probability that the target is 1 one horizon ahead, for every row of the
    latest window. Each row carries a prediction id, the model name and version, the MLflow run
    and the feature table version it was computed from. Re-scoring a window with the same model
    replaces its rows; other models' predictions stay."""
    import mlflow as ml

    client = mlflow.client()
    name, version = champion["name"], champion["version"]
    alias_now = int(client.get_model_version_by_alias(name, "champion").version)
    if alias_now != version:
        context.log.warning("Champion alias moved to v%s since the champion asset ran; scoring with v%s", alias_now, alias_now)
        version = alias_now
    mv = client.get_model_version(name, str(version))
    run_id = mv.run_id
    lineage = ml.artifacts.load_dict(f"runs:/{run_id}/training_set.json")
    feats = lineage["features"]
    booster = ml.lightgbm.load_model(f"models:/{name}/{version}")
    # What this version was trained on, kept in Delta so that a trace needs no MLflow.
    record_model_lineage(
        lake.uri("registry", "model_lineage"),
        lineage_row(name, version, client.get_run(run_id), lineage, mv.creation_timestamp,
                    context.run.run_id),
        storage_options=lake.options,
    )

    feat_uri = lake.uri("features", SPEC.name)
    feat_version = table_version(feat_uri, lake.options)
    table = scan_table(feat_uri, feat_version, lake.options)
    window = table.select(pl.col("window").max()).collect().item()
    rows = table.filter(pl.col("window") == window).collect()
    out = scored_rows(rows, booster, feats, SPEC.key_columns, name=name, version=version,
                      run_id=run_id, features_version=feat_version, dagster_run_id=context.run.run_id)
    # Stored in id order: every row of this write shares the id's "<window>.<version>." prefix,
    # and sorted digests give each Parquet row group a narrow id range, so a trace skips files
    # and row groups by their statistics.
    out = out.sort("prediction_id")
    score = out["score"].to_numpy()
    result = write_table(
        lake.uri("predictions", SPEC.name), out, mode="overwrite",
        replace_where=f"window = '{window}' AND model_version = {version}",
        partition_by=["window"], storage_options=lake.options,
        commit_metadata=provenance(
            context.run.run_id, model_name=name, model_version=version, mlflow_run_id=run_id,
            features_version=feat_version,
            training_set_version=lineage.get("training_set_delta_version"),
        ),
    )
    context.log.info("Scored %d rows of window %s with %s v%s", out.height, window, name, version)
    return dg.MaterializeResult(
        metadata={
            **table_metadata(result, out),
            "window": window,
            "model_version": version,
            "mlflow_run_id": run_id,
            "features_delta_version": feat_version,
            "mean_score": float(score.mean()) if len(score) else 0.0,
            "predicted_positive_share": float((score >= THRESHOLD).mean()) if len(score) else 0.0,
        },
        data_version=delta_data_version(result, lake.options),
    )
