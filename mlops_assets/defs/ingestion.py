"""Ingestion: the raw table, one monthly window at a time, validated before it is written."""

from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
import polars as pl
from pydantic import Field

from mlops_assets.datasets import current_spec
from mlops_assets.freshness import RAW_FRESHNESS
from mlops_assets.resources import Lake
from mlops_assets.settings import home
from mlops_assets.sources import fetch_elec2, read_source
from mlops_assets.tables import markdown_table, table_metadata, write_table
from mlops_assets.validation import describe_failures, failure_cases, raw_schema

SPEC = current_spec()
RAW_KEY = dg.AssetKey(["raw", SPEC.name])
SCHEMA_CHECK = "raw_schema"

windows = dg.MonthlyPartitionsDefinition(start_date="1996-05-01", end_date="1999-01-01")


class RawConfig(dg.Config):
    source_path: str = Field(
        default="",
        description="A file to ingest instead of the bundled source, e.g. one that landed in the "
        "landing folder. Only its rows inside the selected windows are written.",
    )


@dg.asset(
    key=RAW_KEY,
    group_name="ingestion",
    kinds={"polars", "delta"},
    partitions_def=windows,
    backfill_policy=dg.BackfillPolicy.single_run(),
    code_version="1",
    output_required=False,
    check_specs=[dg.AssetCheckSpec(SCHEMA_CHECK, asset=RAW_KEY, blocking=True,
                                   description="The batch matches the declared schema (pandera).")],
    metadata={"partition_expr": "window"},
    freshness_policy=RAW_FRESHNESS,
)
def raw_table(context: dg.AssetExecutionContext, config: RawConfig, lake: Lake):
    """The source data as delivered, one row per source row, in monthly windows.

    Columns are renamed to the dataset declaration, the timestamp is rebuilt where the file has
    none, and each row keeps its source file, the file's sha256, its line number and the load
    time. A window is validated before it is written; a failing batch leaves the table untouched.
    """
    keys = context.partition_keys
    wanted = [k[:7] for k in keys]  # "1996-05-01" -> "1996-05"
    source = Path(config.source_path) if config.source_path else fetch_elec2(home().downloads_dir)
    df = read_source(SPEC, source).filter(pl.col("window").is_in(wanted))
    df = df.with_columns(pl.lit(datetime.now(timezone.utc)).cast(pl.Datetime("us", "UTC")).alias("loaded_at"))

    cases = failure_cases(raw_schema(SPEC), df)
    if cases is not None:
        yield dg.AssetCheckResult(
            check_name=SCHEMA_CHECK, passed=False,
            metadata={"failures": cases.height, "first_failures": dg.MetadataValue.md(
                markdown_table(cases.head(20)))},
        )
        raise dg.Failure(
            description=f"{source.name}: {cases.height} validation failure(s); table left unchanged.\n"
            + describe_failures(cases, df),
        )

    in_list = ", ".join(f"'{w}'" for w in wanted)
    result = write_table(
        lake.uri("raw", SPEC.name), df, mode="overwrite", replace_where=f"window in ({in_list})",
        partition_by=["window"], storage_options=lake.options,
    )
    counts = df.group_by("window").len().sort("window")
    context.log.info(
        "Wrote %d rows for windows %s to %s (Delta version %s)", df.height, wanted, result.uri, result.version
    )
    yield dg.MaterializeResult(
        metadata={
            **table_metadata(result, df),
            "windows": ", ".join(wanted),
            "rows_per_window": dg.MetadataValue.md(markdown_table(counts)),
            "source_file": dg.MetadataValue.path(str(source)),
            "source_sha256": df["source_sha256"][0] if df.height else "",
        }
    )
    yield dg.AssetCheckResult(check_name=SCHEMA_CHECK, passed=True, metadata={"rows_checked": df.height})
