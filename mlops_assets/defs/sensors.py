"""Sensors that close the loop: retrain when a monitoring check fails or the model goes stale,
and ingest each file that lands in the landing folder exactly once.

Both rely on Dagster's own bookkeeping: run keys make a replayed or repeated tick launch nothing
new, cursors remember what was handled, and run tags carry the reason a run was started.
"""

import json
import os
import time
from pathlib import Path

import dagster as dg

from mlops_assets.datasets import current_spec
from mlops_assets.defs.ingestion import RAW_KEY
from mlops_assets.defs.ingestion import windows as partitions
from mlops_assets.defs.monitoring import DRIFT_CHECK, PERFORMANCE_CHECK
from mlops_assets.settings import home
from mlops_assets.sources import sha256_file

SPEC = current_spec()
MODEL_KEY = dg.AssetKey("model")

# What a retrain re-materializes, in lineage order.
RETRAIN = dg.AssetSelection.assets(
    "training_set", "hyperparameters", "model", "evaluation", "champion", "predictions"
)
# What follows new data: transform, features, scoring, monitoring.
SCORE_AND_MONITOR = dg.AssetSelection.assets(RAW_KEY) | (
    dg.AssetSelection.groups("transform", "features", "scoring", "monitoring")
)

WATCHED_CHECKS = (
    dg.AssetCheckKey(dg.AssetKey("drift_report"), DRIFT_CHECK),
    dg.AssetCheckKey(dg.AssetKey("model_performance"), PERFORMANCE_CHECK),
)
TRIGGER_TAG = "mlops/trigger"


def _int_env(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def pending_triggers(instance: dg.DagsterInstance, handled: dict) -> list[tuple[str, str]]:
    """Failing evaluations not yet handled, as (label, id) pairs. ``handled`` maps a watched
    item to the last evaluation id (or freshness timestamp) already acted on."""
    from dagster._core.definitions.freshness import FreshnessState
    from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

    found = []
    for key in WATCHED_CHECKS:
        record = instance.get_latest_asset_check_evaluation_record(key)
        label = key.to_user_string()
        if (
            record is not None
            and record.status == AssetCheckExecutionRecordStatus.FAILED
            and record.id > handled.get(label, 0)
        ):
            found.append((label, str(record.id)))
    fresh = instance.get_freshness_state_records([MODEL_KEY]).get(MODEL_KEY)
    if fresh is not None and fresh.freshness_state == FreshnessState.FAIL:
        stamp = int(fresh.updated_at.timestamp())
        if stamp > handled.get("model:freshness", 0):
            found.append(("model:freshness", str(stamp)))
    return found


@dg.sensor(
    name="retrain_on_failed_checks",
    target=RETRAIN,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Retrains, evaluates and re-promotes the model when the drift or performance "
    "check fails or the model's freshness policy fails. One run per failing evaluation; a "
    "cooldown and a daily cap stop retrain storms.",
)
def retrain_on_failed_checks(context: dg.SensorEvaluationContext):
    handled = json.loads(context.cursor) if context.cursor else {}
    triggers = pending_triggers(context.instance, handled)
    if not triggers:
        return dg.SkipReason("No failing drift, performance or freshness evaluation to act on.")

    cooldown = _int_env("MLOPS_RETRAIN_COOLDOWN_MINUTES", 60) * 60
    cap = _int_env("MLOPS_RETRAIN_DAILY_CAP", 4)
    recent = context.instance.get_run_records(
        dg.RunsFilter(tags={TRIGGER_TAG: "retrain"}, created_after=_utc(time.time() - 86400))
    )
    if len(recent) >= cap:
        return dg.SkipReason(f"Daily cap reached: {len(recent)} retrains in 24 h (MLOPS_RETRAIN_DAILY_CAP={cap}).")
    if recent and time.time() - recent[0].create_timestamp.timestamp() < cooldown:
        return dg.SkipReason(f"Cooling down: last retrain {recent[0].dagster_run.run_id[:8]} was less than {cooldown // 60} min ago.")

    # The run key names the evaluations it answers, so a replayed tick or a restarted daemon
    # asks for the same run and Dagster launches it once.
    run_key = "retrain:" + ",".join(f"{label}#{ident}" for label, ident in sorted(triggers))
    for label, ident in triggers:
        handled[label] = int(ident)
    context.update_cursor(json.dumps(handled, sort_keys=True))
    reason = "; ".join(label for label, _ in triggers)
    context.log.info("Requesting a retrain: %s", reason)
    return dg.RunRequest(run_key=run_key, tags={TRIGGER_TAG: "retrain", "mlops/reason": reason[:200]})


def _utc(ts: float):
    from datetime import datetime, timezone

    return datetime.fromtimestamp(ts, tz=timezone.utc)


def landing_dir() -> Path:
    return Path(os.environ.get("MLOPS_LANDING_DIR", str(home().root / "landing" / SPEC.name)))


@dg.sensor(
    name="landing_files",
    target=SCORE_AND_MONITOR,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Ingests each CSV that lands in the landing folder exactly once (run key = the "
    "file's sha256), then transforms, scores and monitors the windows it holds.",
)
def landing_files(context: dg.SensorEvaluationContext):
    import polars as pl

    from mlops_assets.sources import SourceError, read_source

    folder = landing_dir()
    seen = set(json.loads(context.cursor)) if context.cursor else set()
    files = sorted(folder.glob("*.csv")) if folder.exists() else []
    requests = []
    for path in files:
        digest = sha256_file(path)
        if digest in seen:
            continue
        try:
            windows = read_source(SPEC, path)["window"].unique().sort().to_list()
        except SourceError as exc:
            context.log.error("Skipping %s: %s", path.name, exc)
            seen.add(digest)
            continue
        if not windows:
            context.log.warning("%s holds no rows; nothing to ingest", path.name)
        for window in windows:
            requests.append(
                dg.RunRequest(
                    run_key=f"landing:{digest}:{window}",
                    partition_key=f"{window}-01" if SPEC.windows == "monthly" else window,
                    run_config={"ops": {"raw__" + SPEC.name: {"config": {"source_path": str(path)}}}},
                    tags={TRIGGER_TAG: "landing", "mlops/source_file": path.name},
                )
            )
        seen.add(digest)
    context.update_cursor(json.dumps(sorted(seen)))
    if not requests:
        return dg.SkipReason(f"No new files in {folder}.")
    if isinstance(partitions, dg.DynamicPartitionsDefinition):
        # Data without time: each landed batch becomes a partition of its own first.
        names = sorted({r.partition_key for r in requests})
        return dg.SensorResult(run_requests=requests, dynamic_partitions_requests=[partitions.build_add_request(names)])
    return requests
