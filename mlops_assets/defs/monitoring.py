"""Monitoring: drift of the latest window against the data the model was trained on."""

import dagster as dg
import polars as pl
from pydantic import Field

from mlops_assets.datasets import current_spec
from mlops_assets.defs.features import features
from mlops_assets.defs.training import training_set
from mlops_assets.resources import Lake, ReportStore
from mlops_assets.tables import read_table, table_metadata, table_version, write_table

SPEC = current_spec()
DRIFT_CHECK = "no_data_drift"


class DriftConfig(dg.Config):
    numeric_threshold: float = Field(default=0.1, description="Normed Wasserstein distance from which a numeric column drifts.")
    categorical_threshold: float = Field(default=0.1, description="Jensen-Shannon distance from which a categorical column drifts.")
    drift_share: float = Field(default=0.5, description="Share of drifted columns from which the window drifts.")
    report_sample_rows: int = Field(default=20_000, description="Rows per side in the Evidently HTML report.")


@dg.asset(
    group_name="monitoring", kinds={"polars", "evidently", "delta"}, deps=[training_set, features], code_version="1",
    check_specs=[dg.AssetCheckSpec(DRIFT_CHECK, asset="drift_report",
                                   description="The latest window has not drifted from the training data.")],
)
def drift_report(context: dg.AssetExecutionContext, config: DriftConfig, lake: Lake, reports: ReportStore):
    """Per-column drift of the latest window against the training set's windows: the statistic,
    its threshold and a verdict per column, the share of drifted columns and the verdict for the
    window, plus an Evidently HTML report for people. Columns that cannot be tested are listed
    with the reason."""
    from mlops_assets.drift import detect_drift
    from mlops_assets.reports import write_evidently_report

    columns = [*SPEC.numeric, *SPEC.categorical]
    ts_uri, feat_uri = lake.uri("training_set", SPEC.name), lake.uri("features", SPEC.name)
    ts_version, feat_version = table_version(ts_uri, lake.options), table_version(feat_uri, lake.options)
    reference = read_table(ts_uri, ts_version, lake.options)
    feats = read_table(feat_uri, feat_version, lake.options)
    window = feats["window"].max()
    current = feats.filter(pl.col("window") == window)
    ref_cols = [c for c in columns if c in reference.columns]
    cur_cols = [c for c in columns if c in current.columns]
    summary = detect_drift(
        reference.select(ref_cols), current.select(cur_cols),
        numeric=[c for c in SPEC.numeric], categorical=[c for c in SPEC.categorical],
        numeric_threshold=config.numeric_threshold, categorical_threshold=config.categorical_threshold,
        drift_share=config.drift_share,
    )
    html = write_evidently_report(
        reference.select(ref_cols), current.select(cur_cols), list(SPEC.numeric), list(SPEC.categorical),
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
        "report_url": dg.MetadataValue.url(html.resolve().as_uri()),
        "training_set_delta_version": ts_version,
        "features_delta_version": feat_version,
    }
    yield dg.MaterializeResult(metadata={**table_metadata(result, frame), **meta})
    yield dg.AssetCheckResult(
        check_name=DRIFT_CHECK, passed=not summary.drifted, severity=dg.AssetCheckSeverity.WARN,
        metadata={"window": window, "drift_share": summary.drift_share,
                  "drifted": ", ".join(c.column for c in summary.columns if c.status == "drift")},
    )
