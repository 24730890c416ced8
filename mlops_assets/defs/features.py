"""Features: the model's inputs, built from the raw table and the dbt daily mart."""

import dagster as dg
import polars as pl

from mlops_assets.audit import provenance
from mlops_assets.datasets import current_spec
from mlops_assets.dbt import DBT_DATASETS
from mlops_assets.defs.ingestion import RAW_KEY
from mlops_assets.features import SOURCE_COLUMNS, build_features, feature_columns, single_feature_auc
from mlops_assets.validation import describe_failures, failure_cases, features_schema
from mlops_assets.resources import Lake
from mlops_assets.versions import code_version_for, delta_data_version
from mlops_assets.tables import markdown_table, read_table, scan_table, table_metadata, table_version, write_table

SPEC = current_spec()
# The previous day's summary comes from the dbt mart, for datasets dbt models that ask for it.
USES_MART = SPEC.name in DBT_DATASETS and SPEC.features.daily_summary
DAILY_MART = dg.AssetKey(["daily_market"])
LEAKAGE_CHECK = "no_single_feature_leak"
SCHEMA_CHECK = "features_schema"
LEAKAGE_AUC = 0.95
LEAKAGE_SAMPLE_ROWS = 100_000


@dg.asset(
    group_name="features",
    kinds={"polars", "delta"},
    deps=[RAW_KEY, *([DAILY_MART] if USES_MART else [])],
    code_version=code_version_for(__name__, "mlops_assets.features", "mlops_assets.validation",
                                  libraries=("polars",)),
    output_required=False,
    check_specs=[dg.AssetCheckSpec(SCHEMA_CHECK, asset="features", blocking=True,
                                   description="Numeric inputs finite where present, label 0/1, one row per key (pandera).")],
)
def features(context: dg.AssetExecutionContext, lake: Lake):
    """One row per raw row with what is known at that time: calendar, lags, rolling means and
    deviations over the horizon, declared differences, the previous day's market summary (dbt
    mart ``daily_market``), and the label: the target one horizon ahead (null until it arrives).
    """

    raw_uri = lake.uri("raw", SPEC.name)
    raw_version = table_version(raw_uri, lake.options)
    unused = [c for c in SOURCE_COLUMNS if c not in SPEC.ordering]  # provenance, unless it orders rows
    raw = scan_table(raw_uri, raw_version, lake.options).drop(unused, strict=False).collect()
    daily, daily_version = None, None
    if USES_MART:
        mart_uri = lake.uri("marts", "daily_market")
        daily_version = table_version(mart_uri, lake.options)
        daily = read_table(mart_uri, daily_version, lake.options)
    df = build_features(SPEC, raw, daily)
    del raw, daily  # the feature table can be several times their size; free them first
    cases = failure_cases(features_schema(SPEC, df, feature_columns(SPEC, df)), df)
    if cases is not None:
        yield dg.AssetCheckResult(check_name=SCHEMA_CHECK, passed=False,
                                  metadata={"failures": cases.height,
                                            "first_failures": dg.MetadataValue.md(markdown_table(cases.head(20)))})
        raise dg.Failure(f"The feature table breaks its schema in {cases.height} place(s); table left "
                         "unchanged.\n" + describe_failures(cases, df))
    result = write_table(
        lake.uri("features", SPEC.name), df, mode="overwrite", evolve_schema=True,
        storage_options=lake.options,
        commit_metadata=provenance(context.run.run_id, raw_version=raw_version,
                                   daily_market_version=daily_version),
    )
    labelled = df.filter(pl.col(SPEC.label).is_not_null()).height
    context.log.info(
        "Built %d feature rows (%d labelled) from raw version %s into Delta version %s",
        df.height, labelled, raw_version, result.version,
    )
    yield dg.MaterializeResult(
        metadata={
            **table_metadata(result, df),
            "raw_delta_version": raw_version,
            **({"daily_market_delta_version": daily_version} if daily_version is not None else {}),
            "feature_count": len(feature_columns(SPEC, df)),
            "labelled_rows": labelled,
            "windows": ", ".join(df["window"].unique().sort().to_list()),
        },
        data_version=delta_data_version(result, lake.options),
    )
    yield dg.AssetCheckResult(check_name=SCHEMA_CHECK, passed=True, metadata={"rows_checked": df.height})


@dg.asset_check(asset=features, name=LEAKAGE_CHECK, blocking=False)
def no_single_feature_leak(lake: Lake) -> dg.AssetCheckResult:
    """Warns when one feature alone nearly predicts the label (AUC >= 0.95): a sign of leakage.
    Above 200,000 labelled rows the AUCs come from every k-th labelled row (100,000 to 200,000
    of them, spread over the whole period), which puts them within about 0.005 of the full
    figure: ample to tell a leak at 0.95 from a useful feature."""
    table = scan_table(lake.uri("features", SPEC.name), storage_options=lake.options)
    columns = feature_columns(SPEC, pl.DataFrame(schema=table.collect_schema()))
    labelled = table.select(SPEC.label, *columns).filter(pl.col(SPEC.label).is_not_null())
    count = labelled.select(pl.len()).collect().item()
    # Every k-th labelled row: spread over the whole period, and read in a stream, so the
    # full table is never in memory.
    every = max(1, count // LEAKAGE_SAMPLE_ROWS)
    rows = labelled.gather_every(every).collect(engine="streaming")
    top = single_feature_auc(rows, SPEC.label, columns)
    worst = top.row(0) if top.height else ("", 0.5)
    note = {} if top.height else {"note": "no feature could be tested: it needs labelled rows of both classes"}
    return dg.AssetCheckResult(
        passed=worst[1] < LEAKAGE_AUC,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            **note,
            "strongest_feature": worst[0],
            "strongest_auc": worst[1],
            "labelled_rows": count,
            "rows_used": rows.height,
            "top_features": dg.MetadataValue.md(markdown_table(top.head(10))),
        },
    )
