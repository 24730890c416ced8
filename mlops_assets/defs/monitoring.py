"""Monitoring: drift of the latest window against the data the model was trained on."""

import dagster as dg
import polars as pl
from pydantic import Field

from mlops_assets.datasets import current_spec
from mlops_assets.defs.features import features
from mlops_assets.defs.training import training_set
from mlops_assets.resources import Lake, MlflowTracking, ReportStore
from mlops_assets.tables import markdown_table
from mlops_assets.tables import read_table, scan_table, table_metadata, table_version, write_table
from mlops_assets.versions import code_version_for, delta_data_version

SPEC = current_spec()
DRIFT_CHECK = "no_data_drift"


class DriftConfig(dg.Config):
    numeric_threshold: float = Field(default=SPEC.monitoring.numeric_threshold, description="Normed Wasserstein distance from which a numeric column drifts (default from the dataset declaration).")
    categorical_threshold: float = Field(default=SPEC.monitoring.categorical_threshold, description="Jensen-Shannon distance from which a categorical column drifts (default from the dataset declaration).")
    drift_share: float = Field(default=SPEC.monitoring.drift_share, description="Share of drifted columns from which the window drifts (default from the dataset declaration).")
    report_sample_rows: int = Field(default=20_000, description="Rows per side in the Evidently HTML report.")


@dg.asset(
    group_name="monitoring", kinds={"polars", "evidently", "delta"}, deps=[training_set, features],
    code_version=code_version_for(__name__, "mlops_assets.drift", "mlops_assets.reports", libraries=("scipy", "evidently")),
    check_specs=[dg.AssetCheckSpec(DRIFT_CHECK, asset="drift_report",
                                   description="The latest window has not drifted from the training data.")],
)
def drift_report(context: dg.AssetExecutionContext, config: DriftConfig, lake: Lake, reports: ReportStore, mlflow: MlflowTracking):
    """Per-column drift of the latest window against the training set's windows: the statistic,
    its threshold and a verdict per column, the share of drifted columns and the verdict for the
    window, plus an Evidently HTML report for people. Columns that cannot be tested are listed
    with the reason."""
    from mlops_assets.drift import detect_drift
    from mlops_assets.reports import write_evidently_report

    columns = [*SPEC.numeric, *SPEC.categorical]
    ts_uri, feat_uri = lake.uri("training_set", SPEC.name), lake.uri("features", SPEC.name)
    ts_version, feat_version = table_version(ts_uri, lake.options), table_version(feat_uri, lake.options)
    reference = scan_table(ts_uri, ts_version, lake.options)
    feats = scan_table(feat_uri, feat_version, lake.options)
    ref_cols = [c for c in columns if c in reference.collect_schema()]
    cur_cols = [c for c in columns if c in feats.collect_schema()]
    window = feats.select(pl.col("window").max()).collect().item()
    reference = reference.select(ref_cols).collect()
    current = feats.filter(pl.col("window") == window).select(cur_cols).collect()
    summary = detect_drift(
        reference, current,
        numeric=[c for c in SPEC.numeric], categorical=[c for c in SPEC.categorical],
        numeric_threshold=config.numeric_threshold, categorical_threshold=config.categorical_threshold,
        drift_share=config.drift_share,
    )
    html = write_evidently_report(
        reference, current, list(SPEC.numeric), list(SPEC.categorical),
        reports.path("drift", f"{SPEC.name}_{window}.html"), sample_rows=config.report_sample_rows,
    )
    frame = summary.to_frame().with_columns(
        pl.lit(window).alias("window"),
        pl.lit(ts_version, pl.Int64).alias("training_set_version"),
        pl.lit(feat_version, pl.Int64).alias("features_version"),
        pl.lit(context.run.run_id).alias("dagster_run_id"),
    )
    result = write_table(
        lake.uri("monitoring", "drift"), frame, mode="overwrite", replace_where=f"window = '{window}'",
        partition_by=["window"], storage_options=lake.options,
    )
    verdict = "DRIFT" if summary.drifted else "no drift"
    # Browsers do not open file:// links from the UI, so the report is also an MLflow artifact,
    # served over http by the MLflow UI.
    report_run = _log_report(context, mlflow, html, window, summary)
    context.log.info(
        "Drift of window %s: %s (%d of %d tested columns drifted, share %.2f); report %s",
        window, verdict, summary.n_drifted, summary.n_tested, summary.drift_share, html,
    )
    meta = {
        "window": window,
        "verdict": verdict,
        "drift_share": summary.drift_share,
        "drifted_columns": summary.n_drifted,
        "tested_columns": summary.n_tested,
        "columns": dg.MetadataValue.md(summary.to_markdown()),
        "report": dg.MetadataValue.path(str(html)),
        "report_url": dg.MetadataValue.url(report_run),
        "training_set_delta_version": ts_version,
        "features_delta_version": feat_version,
    }
    yield dg.MaterializeResult(metadata={**table_metadata(result, frame), **meta},
                               data_version=delta_data_version(result, lake.options))
    yield dg.AssetCheckResult(
        check_name=DRIFT_CHECK, passed=not summary.drifted, severity=dg.AssetCheckSeverity.WARN,
        metadata={"window": window, "drift_share": summary.drift_share,
                  "drifted": ", ".join(c.column for c in summary.columns if c.status == "drift")},
    )


def _log_report(context, mlflow: MlflowTracking, html, window: str, summary) -> str:
    """Log the HTML report to an MLflow run of its own; return the link to it in the MLflow UI."""
    ml, exp_id = mlflow.setup()
    with mlflow.start_run(context, run_name=f"drift-{SPEC.name}-{window}") as run:
        ml.set_tags({"mlops_kind": "drift_report", "window": window})
        ml.log_metrics({"drift_share": summary.drift_share, "drifted_columns": summary.n_drifted,
                        "tested_columns": summary.n_tested})
        ml.log_artifact(str(html), artifact_path="drift")
    return f"{mlflow.run_url(exp_id, run.info.run_id)}/artifacts/drift/{html.name}"


PERFORMANCE_CHECK = "champion_performance"


class PerformanceConfig(dg.Config):
    min_auc: float = Field(default=SPEC.monitoring.min_auc, description="The check fails when a window's AUC falls below this (default from the dataset declaration).")
    max_drop: float = Field(default=SPEC.monitoring.max_drop, description="... or when it falls this far below the model's holdout AUC at training time (default from the dataset declaration).")
    min_label_coverage: float = Field(default=0.9, description="Share of a window's predictions whose label must have arrived before it is judged.")


def _training_auc(client, name: str, version: int) -> float | None:
    try:
        run_id = client.get_model_version(name, str(version)).run_id
        return client.get_run(run_id).data.metrics.get("holdout_auc")
    except Exception:  # a version deleted from the registry: no reference figure
        return None


@dg.asset(
    group_name="monitoring", kinds={"polars", "delta"}, deps=["predictions", features],
    code_version=code_version_for(__name__, libraries=("scikit-learn",)),
    check_specs=[dg.AssetCheckSpec(PERFORMANCE_CHECK, asset="model_performance",
                                   description="The champion's AUC on its latest labelled window holds up.")],
)
def model_performance(context: dg.AssetExecutionContext, config: PerformanceConfig, lake: Lake, mlflow: MlflowTracking):
    """How each model version did on each window it scored, once the labels arrived: AUC,
    accuracy and label coverage beside the holdout AUC the model had at training time. The
    latest figures are metadata, so the UI plots them across materializations."""
    import numpy as np
    from sklearn.metrics import accuracy_score, roc_auc_score

    preds = read_table(lake.uri("predictions", SPEC.name), storage_options=lake.options)
    keys = list(SPEC.key_columns)
    labels = scan_table(lake.uri("features", SPEC.name), storage_options=lake.options).select(*keys, SPEC.label).collect()
    joined = preds.join(labels, on=keys, how="left")
    client = mlflow.client()
    rows = []
    for (window, name, version), part in joined.group_by(["window", "model_name", "model_version"], maintain_order=True):
        known = part.drop_nulls(SPEC.label)
        coverage = known.height / part.height if part.height else 0.0
        y = known[SPEC.label].to_numpy()
        auc = float(roc_auc_score(y, known["score"])) if len(np.unique(y)) == 2 else None
        acc = float(accuracy_score(y, known["predicted_label"])) if len(y) else None
        rows.append({
            "window": window, "model_name": name, "model_version": int(version),
            "predictions": part.height, "labelled": known.height, "label_coverage": coverage,
            "auc": auc, "accuracy": acc, "training_holdout_auc": _training_auc(client, name, version),
        })
    schema = {"window": pl.String, "model_name": pl.String, "model_version": pl.Int64, "predictions": pl.Int64,
              "labelled": pl.Int64, "label_coverage": pl.Float64, "auc": pl.Float64, "accuracy": pl.Float64,
              "training_holdout_auc": pl.Float64}
    table = pl.DataFrame(rows, schema=schema).sort("window", "model_version")
    result = write_table(lake.uri("monitoring", "performance"), table, mode="overwrite", storage_options=lake.options)

    champion = int(mlflow.client().get_model_version_by_alias(table["model_name"][0], "champion").version) if table.height else None
    judged = table.filter(
        (pl.col("model_version") == champion) & (pl.col("label_coverage") >= config.min_label_coverage)
        & pl.col("auc").is_not_null()
    )
    meta = {**table_metadata(result, table), "windows": dg.MetadataValue.md(markdown_table(table))}
    if judged.height:
        last = judged.row(-1, named=True)
        ref = last["training_holdout_auc"]
        failed = last["auc"] < config.min_auc or (ref is not None and ref - last["auc"] > config.max_drop)
        meta.update({"window": last["window"], "auc": last["auc"], "accuracy": last["accuracy"],
                     "model_version": last["model_version"]})
        context.log.info("Champion v%s on window %s: AUC %.3f (training holdout %s)", champion,
                         last["window"], last["auc"], f"{ref:.3f}" if ref is not None else "n/a")
        check = dg.AssetCheckResult(
            check_name=PERFORMANCE_CHECK, passed=not failed,
            metadata={"window": last["window"], "auc": last["auc"], "min_auc": config.min_auc,
                      "training_holdout_auc": ref if ref is not None else -1.0, "max_drop": config.max_drop},
        )
    else:
        check = dg.AssetCheckResult(check_name=PERFORMANCE_CHECK, passed=True,
                                    metadata={"note": "no window of the champion has its labels yet"})
    yield dg.MaterializeResult(metadata=meta, data_version=delta_data_version(result, lake.options))
    yield check
