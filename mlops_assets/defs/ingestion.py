"""Ingestion: the raw table, one window at a time, validated before it is written.

Windows come from the dataset declaration: months (or days) of its time column, or one batch per
source file for data without time. Rows that break a rule of the declaration go to the
``quarantine/<name>`` table with their reason, file and line; the batch is refused when their
share passes the declared threshold, or when the data does not have the declared shape at all.
"""

from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
import polars as pl
from pydantic import Field

from mlops_assets.audit import provenance
from mlops_assets.datasets import DatasetSpec, current_spec
from mlops_assets.freshness import RAW_FRESHNESS
from mlops_assets.resources import Lake
from mlops_assets.settings import home
from mlops_assets.sources import SourceError, batches, read_batch, source_paths
from mlops_assets.tables import markdown_table, table_metadata, write_table
from mlops_assets.versions import code_version_for, delta_data_version
from mlops_assets.validation import describe_failures, failure_cases, quarantine_verdict, raw_schema, split_valid_rows

SPEC = current_spec()
RAW_KEY = dg.AssetKey(["raw", SPEC.name])
SCHEMA_CHECK = "raw_schema"


def window_partitions(spec: DatasetSpec) -> dg.PartitionsDefinition:
    """Monthly or daily partitions of the time column, or one dynamic partition per batch."""
    if spec.windows == "batch":
        return dg.DynamicPartitionsDefinition(name=f"{spec.name}_batches")
    start = spec.window_start or (spec.start.date() if spec.start else None)
    if start is None:
        raise ValueError(f"dataset {spec.name!r}: declare windows.start for {spec.windows} windows")
    end = spec.window_end.isoformat() if spec.window_end else None
    if spec.windows == "daily":
        return dg.DailyPartitionsDefinition(start_date=start.isoformat(), end_date=end)
    return dg.MonthlyPartitionsDefinition(start_date=start.isoformat(), end_date=end)


def window_of_key(spec: DatasetSpec, key: str) -> str:
    """The value of the ``window`` column for a partition key ("1996-05-01" -> "1996-05")."""
    return key[:7] if spec.windows == "monthly" else key


windows = window_partitions(SPEC)


class RawConfig(dg.Config):
    source_path: str = Field(
        default="",
        description="A file to ingest instead of the declared source, e.g. one that landed in the "
        "landing folder. Only its rows inside the selected windows are written.",
    )


def _read(paths, wanted: list[str]) -> tuple[pl.DataFrame, dict[str, str]]:
    frames, names = [], {}
    for path in paths:
        batch = read_batch(SPEC, path)
        frames.append(batch.frame.filter(pl.col("window").is_in(wanted)))
        names.update(batch.columns)
    return pl.concat(frames, how="vertical"), names


@dg.asset(
    key=RAW_KEY,
    group_name="ingestion",
    kinds={"polars", "delta"},
    partitions_def=windows,
    backfill_policy=dg.BackfillPolicy.single_run(),
    code_version=code_version_for(__name__, "mlops_assets.sources", "mlops_assets.validation",
                                  "mlops_assets.datasets", libraries=("polars", "pandera")),
    output_required=False,
    check_specs=[dg.AssetCheckSpec(SCHEMA_CHECK, asset=RAW_KEY, blocking=True,
                                   description="The batch has the declared shape and at most the "
                                   "declared share of its rows is quarantined (pandera).")],
    metadata={"partition_expr": "window"},
    freshness_policy=RAW_FRESHNESS,
)
def raw_table(context: dg.AssetExecutionContext, config: RawConfig, lake: Lake):
    """The source data as delivered, one row per source row, in windows.

    Column names are normalised and renamed to the declaration (the original names are in the
    metadata), values are parsed to the declared types, the timestamp is rebuilt where the file
    has none, and each row keeps its source file, the file's sha256, its line number and the load
    time. Rows that break a rule go to ``quarantine/<name>``; a batch with too many of them, or
    one without the declared shape, leaves both tables untouched.
    """
    wanted = [window_of_key(SPEC, k) for k in context.partition_keys]
    if config.source_path:
        paths = [Path(config.source_path)]
    elif SPEC.windows == "batch":
        found = batches(SPEC, home().downloads_dir)
        paths = [found[w] for w in wanted if w in found]
    else:
        paths = source_paths(SPEC, home().downloads_dir)
    try:
        df, names = _read(paths, wanted)
        loaded_at = pl.lit(datetime.now(timezone.utc)).cast(pl.Datetime("us", "UTC")).alias("loaded_at")
        valid, quarantined = split_valid_rows(SPEC, df)
    except SourceError as exc:  # structural: file, column, line, expected and found
        yield dg.AssetCheckResult(check_name=SCHEMA_CHECK, passed=False,
                                  metadata={"error": str(exc)[:2000]})
        raise dg.Failure(description=f"{exc}\nTable left unchanged.") from exc

    verdict = quarantine_verdict(quarantined, df.height, SPEC.quarantine_max_share)
    sources = ", ".join(sorted(df["source_file"].unique().to_list())) if df.height else ""
    if not verdict.passed:
        cases = failure_cases(raw_schema(SPEC), df)
        yield dg.AssetCheckResult(
            check_name=SCHEMA_CHECK, passed=False,
            metadata={"failures": cases.height, "quarantined": verdict.quarantined,
                      "quarantined_share": verdict.share, "max_share": verdict.max_share,
                      "first_failures": dg.MetadataValue.md(markdown_table(cases.head(20)))},
        )
        raise dg.Failure(
            description=f"{sources}: {verdict.message}; tables left unchanged.\n"
            + describe_failures(cases, df),
        )

    in_list = ", ".join(f"'{w}'" for w in wanted)
    q_result = write_table(
        lake.uri("quarantine", SPEC.name), quarantined.with_columns(loaded_at), mode="overwrite",
        replace_where=f"window in ({in_list})", partition_by=["window"],
        storage_options=lake.options, evolve_schema=True,
    ) if quarantined.height else None
    valid = valid.with_columns(loaded_at)
    result = write_table(
        lake.uri("raw", SPEC.name), valid, mode="overwrite", replace_where=f"window in ({in_list})",
        partition_by=["window"], storage_options=lake.options,
        commit_metadata=provenance(
            context.run.run_id, windows=",".join(wanted),
            source_sha256=",".join(sorted(valid["source_sha256"].unique().to_list())),
        ),
    )
    counts = valid.group_by("window").len().sort("window")
    context.log.info(
        "Wrote %d rows for windows %s to %s (Delta version %s); %s",
        valid.height, wanted, result.uri, result.version, verdict.message,
    )
    original = pl.DataFrame({"column": list(names), "in_source": list(names.values())})
    yield dg.MaterializeResult(
        metadata={
            **table_metadata(result, valid),
            "window_rows": valid.height,
            "windows": ", ".join(wanted),
            "rows_per_window": dg.MetadataValue.md(markdown_table(counts)),
            "source_file": dg.MetadataValue.path(str(paths[0])) if len(paths) == 1 else sources,
            "source_sha256": valid["source_sha256"][0] if valid.height else "",
            "source_columns": dg.MetadataValue.md(markdown_table(original)),
            "quarantined": verdict.quarantined,
            "quarantine_version": q_result.version if q_result and q_result.version is not None else -1,
        },
        data_version=delta_data_version(result, lake.options),
    )
    yield dg.AssetCheckResult(
        check_name=SCHEMA_CHECK, passed=True,
        metadata={"rows_checked": df.height, "quarantined": verdict.quarantined,
                  "quarantined_share": verdict.share, "max_share": verdict.max_share},
    )
