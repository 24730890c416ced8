"""Audit: from one prediction back to the raw file it came from, and a model's training set again.

Two questions an auditor asks, each answered from what the platform recorded when it ran:

* :func:`trace`: which model made this prediction, which alias it held then, which training set
  (Delta version, content hash), feature and raw table versions, source files, code and Dagster
  runs were behind it. It reads Delta tables and their commit metadata only, so it starts fast
  and never imports MLflow, LightGBM or Dagster, except as a fallback for a model version scored
  before ``registry/model_lineage`` existed.
* :func:`trace_training`: the same from a model version's training set back to its source files;
  each model card gives the command (``mlops-assets trace --model-version N``).
* :func:`reproduce`: rebuild a registered model's training set by time travel on the feature
  table, check it against the content hash recorded at training time, retrain with the recorded
  parameters and compare the booster with the registered one. A version that vacuum or log
  cleanup removed stops it with a :class:`VersionGone` naming the table and version.

What each step records for this (all as Delta commit metadata unless said otherwise):

=================  =========================================================================
raw                ``dagster_run_id``, ``windows``, ``source_sha256``, code version
features           ``raw_version`` it was built from, ``dagster_run_id``, code version
training_set       ``features_version``, ``raw_version``, ``content_sha256``, windows
                   (written by the ``training_set`` asset)
predictions        per row: model, MLflow run, ``features_version``, ``scored_at``,
                   ``dagster_run_id``; per commit: the model's training set version, code version
registry/          one row per model version that scored (table ``registry/model_lineage``):
model_lineage      its training set version and hash, feature and raw versions, training run
registry/          one row per promotion decision (written by the ``champion`` asset)
promotions
=================  =========================================================================

The code version is the package version, the git commit of the checkout when there is one (and
whether it had uncommitted changes), and a hash of the dbt manifest without its timestamps.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import polars as pl
from deltalake import DeltaTable

from mlops_assets import __version__
from mlops_assets.datasets import DatasetSpec, current_spec
from mlops_assets.prediction_ids import parse_prediction_id
from mlops_assets.settings import PROJECT_ROOT, home

log = logging.getLogger(__name__)

CHAMPION = "champion"  # the alias name (mlops_assets.registry imports numpy; this module must not)

LINEAGE_SCHEMA = {
    "model_name": pl.String,
    "model_version": pl.Int64,
    "mlflow_run_id": pl.String,
    "training_set_version": pl.Int64,
    "training_set_sha256": pl.String,
    "features_version": pl.Int64,
    "raw_version": pl.Int64,
    "train_windows": pl.String,
    "scoring_window": pl.String,
    "training_dagster_run_id": pl.String,
    "mlops_assets_version": pl.String,
    "dagster_code_version": pl.String,
    "registered_at": pl.Datetime("us", "UTC"),
    "recorded_at": pl.Datetime("us", "UTC"),
    "recorded_by_dagster_run_id": pl.String,
}
"""``registry/model_lineage``: what a model version was trained on, copied from its MLflow run
when it first scores, so that a trace needs no MLflow."""


class AuditError(RuntimeError):
    """An audit question that cannot be answered; the message says why."""


class VersionGone(AuditError):
    """A Delta table version that a trace or a reproduction needs is no longer readable."""

    def __init__(self, table: str, version: int, why: str):
        self.table, self.version = table, version
        super().__init__(f"{table} version {version} is gone: {why}")


# --------------------------------------------------------------------------------------------
# Code version


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(PROJECT_ROOT), *args], capture_output=True,
                              text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def dbt_manifest_sha256(path: Path | None = None) -> str | None:
    """sha256 of the dbt manifest without its ``metadata`` block (which holds the parse time and
    invocation id), so that parsing the same project twice gives the same hash; None without one."""
    path = path or Path(home().dbt_target_path) / "manifest.json"
    try:
        manifest = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    manifest.pop("metadata", None)
    return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()


def code_version() -> dict[str, str | None]:
    """The code running now: package version, git commit (None outside a git checkout) and
    whether the checkout has uncommitted changes to tracked files, dbt manifest hash."""
    commit = _git("rev-parse", "HEAD") if (PROJECT_ROOT / ".git").exists() else None
    dirty = None
    if commit:
        status = _git("status", "--porcelain", "--untracked-files=no")
        dirty = None if status is None else bool(status)
    return {
        "mlops_assets_version": __version__,
        "git_commit": commit,
        "git_dirty": None if dirty is None else str(dirty).lower(),
        "dbt_manifest_sha256": dbt_manifest_sha256(),
    }


def provenance(dagster_run_id: str, **extra: Any) -> dict[str, str]:
    """Commit metadata for a Delta write made by a Dagster run: the run id, the code version and
    ``extra`` (values as strings; absent values left out, since commit metadata holds strings)."""
    meta = {"dagster_run_id": dagster_run_id, **code_version(), **extra}
    return {k: str(v) for k, v in meta.items() if v is not None and v != ""}


# --------------------------------------------------------------------------------------------
# Delta helpers (no Dagster)


def table_uri(layer: str, name: str) -> str:
    return "/".join([home().delta_root.rstrip("/"), layer, name])


def _open(uri: str, version: int | None = None) -> DeltaTable | None:
    """The table at ``uri`` (at ``version``), None when there is no table; a version whose log is
    gone raises :class:`VersionGone`."""
    from deltalake.exceptions import TableNotFoundError

    try:
        latest = DeltaTable(uri)
    except TableNotFoundError:
        return None
    if version is None:
        return latest
    if version > latest.version():
        raise VersionGone(_short(uri), version, f"the table is only at version {latest.version()}")
    try:
        return DeltaTable(uri, version=version)
    except Exception as e:  # delta-rs reports a missing log entry as a generic DeltaError
        raise VersionGone(
            _short(uri), version,
            f"its entry in the Delta log was removed by log cleanup ({type(e).__name__}: "
            f"{str(e).splitlines()[0]})",
        ) from e


def _short(uri: str) -> str:
    """``raw/elec2`` for ``<delta root>/raw/elec2``."""
    root = home().delta_root.rstrip("/") + "/"
    return uri[len(root):] if uri.startswith(root) else uri


def commit_info(uri: str, version: int) -> dict | None:
    """The commit info (with its custom metadata) of ``version``; None when the table or that log
    entry is gone."""
    if version is None or version < 0:
        return None
    local = uri.removeprefix("file://") if uri.startswith("file://") or "://" not in uri else None
    if local is not None:  # one small file, read directly
        path = Path(local) / "_delta_log" / f"{version:020d}.json"
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return None
        for line in lines:
            action = json.loads(line) if line.strip() else {}
            if "commitInfo" in action:
                return {**action["commitInfo"], "version": version}
        return None
    # Elsewhere the whole history, read from the latest version: delta-rs 1.6.6 numbers the
    # entries of a table loaded at an older version wrongly.
    table = _open(uri)
    if table is None:
        return None
    return next((h for h in table.history() if h.get("version") == version), None)


def missing_files(table: DeltaTable) -> list[str]:
    """Data files of ``table``'s loaded version that are gone (checked on a local file system;
    elsewhere the read itself fails)."""
    uris = table.file_uris()
    local = [u for u in uris if "://" not in u or u.startswith("file://")]
    return [u for u in local if not os.path.exists(u.removeprefix("file://"))]


def read_version(uri: str, version: int, columns: list[str] | None = None) -> pl.DataFrame:
    """The table at ``version``, raising :class:`VersionGone` when its log entry or any of its
    data files has been removed (by log cleanup or vacuum)."""
    table = _open(uri, version)
    if table is None:
        raise AuditError(f"No Delta table at {uri}")
    gone = missing_files(table)
    if gone:
        raise VersionGone(
            _short(uri), version,
            f"{len(gone)} of its {len(table.file_uris())} data file(s) were removed by a vacuum, "
            f"e.g. {Path(gone[0]).name}",
        )
    try:
        frame = pl.scan_delta(table)
        return (frame.select(columns) if columns else frame).collect()
    except (FileNotFoundError, OSError) as e:
        raise VersionGone(_short(uri), version, f"a data file cannot be read: {e}") from e


def _as_int(value) -> int | None:
    """Recorded versions: -1, '' and None all mean "not recorded"."""
    if value in (None, ""):
        return None
    value = int(value)
    return value if value >= 0 else None


def _iso(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _commit_time(info: dict | None) -> str | None:
    if not info or info.get("timestamp") is None:
        return None
    return datetime.fromtimestamp(info["timestamp"] / 1000, timezone.utc).isoformat()


def _recorded_code(info: dict | None) -> dict | None:
    if not info:
        return None
    code = {k: info.get(k) for k in ("mlops_assets_version", "git_commit", "git_dirty",
                                      "dbt_manifest_sha256")}
    return code if any(code.values()) else None


# --------------------------------------------------------------------------------------------
# Model lineage index


def lineage_row(name: str, version: int, run, training_set: dict, registered_at_ms: int | None,
                dagster_run_id: str) -> dict:
    """One ``registry/model_lineage`` row from a model version's MLflow run (``run.data.tags``)
    and its ``training_set.json``."""
    tags = run.data.tags

    def pick(tag: str, key: str):
        value = tags.get(tag)
        return value if value not in (None, "") else training_set.get(key)

    return {
        "model_name": name,
        "model_version": int(version),
        "mlflow_run_id": run.info.run_id,
        "training_set_version": _as_int(pick("training_set_delta_version",
                                             "training_set_delta_version")),
        "training_set_sha256": pick("training_set_sha256", "content_sha256"),
        "features_version": _as_int(pick("features_delta_version", "features_delta_version")),
        "raw_version": _as_int(pick("raw_delta_version", "raw_delta_version")),
        "train_windows": training_set.get("train_windows"),
        "scoring_window": training_set.get("scoring_window"),
        "training_dagster_run_id": tags.get("dagster_run_id"),
        "mlops_assets_version": tags.get("mlops_assets_version"),
        "dagster_code_version": tags.get("dagster_code_version"),
        "registered_at": (datetime.fromtimestamp(registered_at_ms / 1000, timezone.utc)
                          if registered_at_ms else None),
        "recorded_at": datetime.now(timezone.utc),
        "recorded_by_dagster_run_id": dagster_run_id,
    }


def record_model_lineage(uri: str, row: dict, storage_options: dict | None = None) -> bool:
    """Add ``row`` to ``registry/model_lineage`` unless its model version is there already.
    Returns whether a row was written."""
    from mlops_assets.tables import WriteConflict, upsert_table

    table = _open(uri)
    if table is not None:
        present = (pl.scan_delta(table)
                   .filter((pl.col("model_name") == row["model_name"])
                           & (pl.col("model_version") == row["model_version"]))
                   .select(pl.len()).collect().item())
        if present:
            return False
    frame = pl.DataFrame([row], schema=LINEAGE_SCHEMA)
    try:
        upsert_table(uri, frame, keys=["model_name", "model_version"], evolve_schema=True,
                     storage_options=storage_options)
    except WriteConflict as e:  # a concurrent scoring run recorded the same version
        log.warning("%s: model lineage of %s v%s not recorded here: %s", uri, row["model_name"],
                    row["model_version"], e)
        return False
    return True


def _lineage_from_index(name: str, version: int) -> dict | None:
    table = _open(table_uri("registry", "model_lineage"))
    if table is None:
        return None
    rows = (pl.scan_delta(table)
            .filter((pl.col("model_name") == name) & (pl.col("model_version") == version))
            .collect())
    if rows.height == 0:
        return None
    return {**rows.row(0, named=True), "source": "registry/model_lineage"}


def _mlflow_client():
    from mlops_assets.settings import prepare_environment

    prepare_environment()  # telemetry off, artifact progress bars off
    from mlflow.tracking import MlflowClient

    uri = home().mlflow_tracking_uri
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _lineage_from_mlflow(name: str, version: int) -> dict | None:
    from mlflow.exceptions import MlflowException

    client = _mlflow_client()
    try:
        mv = client.get_model_version(name, str(version))
    except MlflowException:
        return None
    run = client.get_run(mv.run_id)
    row = lineage_row(name, version, run, {}, mv.creation_timestamp, "")
    return {**row, "source": "mlflow"}


def model_lineage(name: str, version: int) -> dict | None:
    """What model ``name`` v``version`` was trained on: from ``registry/model_lineage``, else
    (a version that never scored, or scored before the index existed) from its MLflow run."""
    return _lineage_from_index(name, version) or _lineage_from_mlflow(name, version)


# --------------------------------------------------------------------------------------------
# Promotions


def promotions(model_name: str | None = None, version: int | None = None) -> pl.DataFrame:
    """The ``registry/promotions`` table in decision order, optionally for one model and one
    version (as challenger or as champion before or after)."""
    table = _open(table_uri("registry", "promotions"))
    if table is None:
        raise AuditError("No registry/promotions table yet: no promotion has been decided.")
    frame = pl.scan_delta(table)
    if model_name:
        frame = frame.filter(pl.col("model_name") == model_name)
    if version is not None:
        frame = frame.filter((pl.col("challenger_version") == version)
                             | (pl.col("champion_version_before") == version)
                             | (pl.col("champion_version_after") == version))
    return frame.sort("decided_at").collect()


def champion_history(history: pl.DataFrame, version: int) -> dict:
    """When ``version`` held the champion alias according to the promotions table: the decision
    that gave it the alias and the one that took it away (None while it still holds it)."""
    since = until = None
    holder = None
    for row in history.sort("decided_at").iter_rows(named=True):
        after = row["champion_version_after"]
        if after == version and holder != version:
            since, until = row, None
        elif holder == version and after != version:
            until = row
        holder = after
    return {
        "since": _iso(since["decided_at"]) if since else None,
        "promoted_in_dagster_run": since["dagster_run_id"] if since else None,
        "until": _iso(until["decided_at"]) if until else None,
        "replaced_by_version": until["champion_version_after"] if until else None,
    }


def champion_at(history: pl.DataFrame, when: datetime) -> int | None:
    """The version that held the champion alias at ``when`` (the last decision before it)."""
    before = history.filter(pl.col("decided_at") <= when).sort("decided_at")
    return before["champion_version_after"][-1] if before.height else None


# --------------------------------------------------------------------------------------------
# Trace


def find_prediction(prediction_id: str, spec: DatasetSpec | None = None) -> dict:
    """The predictions row with ``prediction_id``.

    An id names its window and model version (:mod:`mlops_assets.prediction_ids`), so the scan
    reads one ``window`` partition and, within it, only the files whose ``model_version`` and
    ``prediction_id`` statistics can hold the id; an id of the older form is looked for in the
    whole table."""
    spec = spec or current_spec()
    uri = table_uri("predictions", spec.name)
    table = _open(uri)
    if table is None:
        raise AuditError(f"No predictions table at {uri}: nothing has been scored yet.")
    rows = _scan_for_id(table, prediction_id)
    if rows.height == 0:
        raise AuditError(f"No prediction with id {prediction_id!r} in predictions/{spec.name} "
                         f"(version {table.version()}).")
    return rows.sort("scored_at").row(-1, named=True)


def _scan_for_id(table: DeltaTable, prediction_id: str) -> pl.DataFrame:
    """Rows with ``prediction_id``: polars skips partitions and files by the Delta log's
    partition values and min/max statistics before reading any data file."""
    cond = pl.col("prediction_id") == prediction_id
    where = parse_prediction_id(prediction_id)
    if where is not None:
        cond = ((pl.col("window") == where.window)
                & (pl.col("model_version") == where.model_version) & cond)
    return pl.scan_delta(table).filter(cond).collect()


def _commit_of_run(uri: str, dagster_run_id: str) -> dict | None:
    """The newest commit of ``uri`` written by Dagster run ``dagster_run_id``."""
    table = _open(uri)
    if table is None:
        return None
    return next((h for h in table.history() if h.get("dagster_run_id") == dagster_run_id), None)


def _source_files(uri: str, version: int, windows: list[str] | None = None,
                  up_to_window: str | None = None) -> list[dict]:
    """Distinct source files (name, sha256, rows) in the raw table at ``version``, for the given
    windows or for every window up to ``up_to_window`` (what features of that window could read)."""
    table = _open(uri, version)
    gone = missing_files(table)
    if gone:
        raise VersionGone(_short(uri), version,
                          f"{len(gone)} data file(s) were removed by a vacuum")
    frame = pl.scan_delta(table)
    if windows is not None:
        frame = frame.filter(pl.col("window").is_in(windows))
    if up_to_window is not None:
        frame = frame.filter(pl.col("window") <= up_to_window)
    counts = (frame.group_by("source_file", "source_sha256").agg(pl.len().alias("rows"))
              .sort("source_file").collect())
    return counts.to_dicts()


def _raw_step(spec: DatasetSpec, version: int | None, *, key: dict | None = None,
              windows: list[str] | None = None, up_to_window: str | None = None) -> dict:
    uri = table_uri("raw", spec.name)
    if version is None:
        return {"table": f"raw/{spec.name}", "version": None,
                "note": "the raw version was not recorded for this step"}
    info = commit_info(uri, version)
    step: dict[str, Any] = {
        "table": f"raw/{spec.name}", "version": version, "committed_at": _commit_time(info),
        "dagster_run_id": (info or {}).get("dagster_run_id"),
        "code": _recorded_code(info),
    }
    try:
        if key is not None:
            table = _open(uri, version)
            cond = pl.col("window") == key["window"]
            for col in spec.key_columns:
                cond = cond & (pl.col(col) == key[col])
            cols = [c for c in ("source_file", "source_sha256", "source_line", "loaded_at")
                    if c in table.schema().to_arrow().names]
            if not missing_files(table):
                rows = pl.scan_delta(table).filter(cond).select(cols).collect()
                if rows.height:
                    step["row"] = {k: _iso(v) if isinstance(v, datetime) else v
                                   for k, v in rows.row(0, named=True).items()}
        step["source_files"] = _source_files(uri, version, windows, up_to_window)
    except VersionGone as e:
        step["note"] = str(e)
    return step


def _features_step(spec: DatasetSpec, version: int | None) -> dict:
    uri = table_uri("features", spec.name)
    info = commit_info(uri, version) if version is not None else None
    step = {
        "table": f"features/{spec.name}", "version": version, "committed_at": _commit_time(info),
        "raw_version": _as_int((info or {}).get("raw_version")),
        "dagster_run_id": (info or {}).get("dagster_run_id"),
        "code": _recorded_code(info),
    }
    if version is not None and info is None:
        step["note"] = "its Delta log entry is gone (log cleanup)"
    return step


def _model_step(lineage: dict) -> dict:
    return {
        "registered_at": _iso(lineage.get("registered_at")),
        "training_dagster_run_id": lineage.get("training_dagster_run_id"),
        "code": {"mlops_assets_version": lineage.get("mlops_assets_version"),
                 "dagster_code_version": lineage.get("dagster_code_version")},
        "lineage_source": lineage.get("source"),
    }


def _training_set_step(spec: DatasetSpec, lineage: dict) -> dict:
    """The training set a model version learned from: Delta version, hashes, windows, the
    feature and raw versions it was built from and its Dagster run (from its commit, else from
    the model's lineage)."""
    ts_version = lineage.get("training_set_version")
    ts_info = (commit_info(table_uri("training_set", spec.name), ts_version)
               if ts_version is not None else None)
    recorded_sha = (ts_info or {}).get("content_sha256")
    train_windows = ((ts_info or {}).get("train_windows") or lineage.get("train_windows") or "")
    step = {
        "table": f"training_set/{spec.name}",
        "version": ts_version,
        "content_sha256": lineage.get("training_set_sha256") or recorded_sha,
        "content_sha256_in_commit": recorded_sha,
        "train_windows": [w for w in train_windows.split(",") if w],
        "scoring_window": (ts_info or {}).get("scoring_window") or lineage.get("scoring_window"),
        "committed_at": _commit_time(ts_info),
        "dagster_run_id": (ts_info or {}).get("dagster_run_id"),
        "dagster_run_id_from": "training_set commit",
        "features_version": (_as_int((ts_info or {}).get("features_version"))
                             if ts_info else lineage.get("features_version")),
        "raw_version": (_as_int((ts_info or {}).get("raw_version"))
                        if ts_info else lineage.get("raw_version")),
    }
    if step["dagster_run_id"] is None and lineage.get("training_dagster_run_id"):
        # the training_set asset does not record its run; the model's run built it
        step["dagster_run_id"] = lineage["training_dagster_run_id"]
        step["dagster_run_id_from"] = "the model's MLflow run tag dagster_run_id"
    if ts_version is not None and ts_info is None:
        step["note"] = "its Delta log entry is gone (log cleanup)"
    return step


def trace_training(version: int, name: str | None = None,
                   spec: DatasetSpec | None = None) -> dict:
    """The training data of model ``name`` v``version`` traced back to its source files: the
    training set's Delta version and hash, the feature and raw versions it was built from, the
    source files with their sha256, and the code and Dagster run of each step. This is the trace
    a model card links to (``mlops-assets trace --model-version N``)."""
    spec = spec or current_spec()
    name = name or model_name(spec)
    lineage = model_lineage(name, version)
    if lineage is None:
        raise AuditError(f"{name} has no registered version {version}.")
    training_set = _training_set_step(spec, lineage)
    features = _features_step(spec, training_set["features_version"])
    if training_set["raw_version"] is None:
        training_set["raw_version"] = features.get("raw_version")
    windows = training_set["train_windows"]
    return {
        "model": {"name": name, "version": version, "mlflow_run_id": lineage.get("mlflow_run_id"),
                  **_model_step(lineage)},
        "training_set": training_set,
        "features": features,
        "raw": _raw_step(spec, training_set["raw_version"],
                         up_to_window=max(windows) if windows else None),
        "code_now": code_version(),
    }


def trace(prediction_id: str, spec: DatasetSpec | None = None) -> dict:
    """Everything recorded about one prediction, as a JSON-ready dict (see the module doc)."""
    spec = spec or current_spec()
    row = find_prediction(prediction_id, spec)
    name, version, scored_at = row["model_name"], int(row["model_version"]), row["scored_at"]

    try:
        history = promotions(name)
    except AuditError:
        history = pl.DataFrame(schema={"decided_at": pl.Datetime("us", "UTC"),
                                       "champion_version_after": pl.Int64,
                                       "dagster_run_id": pl.String})
    champion_then = champion_at(history, scored_at)
    current_champion = history["champion_version_after"][-1] if history.height else None

    lineage = model_lineage(name, version) or {}
    training_set = _training_set_step(spec, lineage)
    train_windows = training_set["train_windows"]
    train_features_version = training_set["features_version"]
    train_raw_version = training_set["raw_version"]

    scoring_features = _features_step(spec, _as_int(row.get("features_version")))
    training_features = (scoring_features if train_features_version == scoring_features["version"]
                         else _features_step(spec, train_features_version))
    if train_raw_version is None:
        train_raw_version = training_features.get("raw_version")
    if (scoring_features["raw_version"] is None
            and scoring_features["version"] == train_features_version):
        # features written before they recorded their raw version: the training set did
        scoring_features = {**scoring_features, "raw_version": train_raw_version}
        training_features = scoring_features
    key = {c: row[c] for c in (*spec.key_columns, "window")}
    preds_commit = _commit_of_run(table_uri("predictions", spec.name), row["dagster_run_id"])

    prediction = {
        "prediction_id": prediction_id,
        "score": row["score"],
        "predicted_label": row.get("predicted_label"),
        "key": {k: _iso(v) if isinstance(v, datetime) else v for k, v in key.items()},
        "window": row["window"],
        "scored_at": _iso(scored_at),
        "dagster_run_id": row["dagster_run_id"],
        "features_version": scoring_features["version"],
        "code": _recorded_code(preds_commit),
    }
    model = {
        "name": name,
        "version": version,
        "mlflow_run_id": row["mlflow_run_id"],
        "alias_at_scoring": CHAMPION if champion_then == version else None,
        "champion_at_scoring": champion_then,
        "champion_now": current_champion,
        "champion": champion_history(history, version) if history.height else None,
        **_model_step(lineage),
    }
    training_set["raw_version"] = train_raw_version
    last_train = max(train_windows) if train_windows else None
    return {
        "prediction": prediction,
        "model": model,
        "training_set": training_set,
        "features": {"scoring": scoring_features, "training": training_features},
        "raw": {
            "scoring": _raw_step(spec, scoring_features.get("raw_version"), key=key,
                                 up_to_window=row["window"]),
            "training": _raw_step(spec, train_raw_version, up_to_window=last_train),
        },
        "code_now": code_version(),
    }


def _v(version) -> str:
    return "(not recorded)" if version is None else f"v{version}"


def _short_hash(value: str | None, n: int = 12) -> str:
    return value[:n] if value else "-"


def format_trace(t: dict) -> str:
    """The trace as lines for a person."""
    p, m, ts = t["prediction"], t["model"], t["training_set"]
    key = ", ".join(f"{k}={v}" for k, v in p["key"].items() if k != "window")
    lines = [
        f"Prediction {p['prediction_id']}",
        f"  score {p['score']:.6f} (label {p['predicted_label']}) for {key}, window {p['window']}",
        f"  scored at {p['scored_at']} in Dagster run {p['dagster_run_id']}",
        f"  from features {_v(p['features_version'])}; code {_fmt_code(p['code'])}",
        f"Model {m['name']} v{m['version']} (MLflow run {m['mlflow_run_id']})",
    ]
    if m["alias_at_scoring"]:
        lines.append(f"  alias when scored: {m['alias_at_scoring']}")
    else:
        lines.append("  alias when scored: none recorded (champion then: "
                     f"{_v(m['champion_at_scoring'])})")
    champ = m["champion"] or {}
    if champ.get("since"):
        until = (f"until {champ['until']} (replaced by v{champ['replaced_by_version']})"
                 if champ.get("until") else "still champion")
        lines.append(f"  champion since {champ['since']} (Dagster run "
                     f"{champ['promoted_in_dagster_run']}), {until}")
    lines.append(f"  champion now: {_v(m['champion_now'])}")
    lines.append(f"  trained in Dagster run {m['training_dagster_run_id']}; package "
                 f"{m['code']['mlops_assets_version']}, asset code version "
                 f"{m['code']['dagster_code_version']} (lineage from {m['lineage_source']})")
    lines += [
        f"Training set {ts['table']} {_v(ts['version'])}, "
        f"sha256 {_short_hash(ts['content_sha256'])}",
        f"  windows {','.join(ts['train_windows'])} (scoring {ts['scoring_window']}), built from "
        f"features {_v(ts['features_version'])} and raw {_v(ts['raw_version'])}",
        f"  committed {ts['committed_at']}, Dagster run {ts['dagster_run_id']} "
        f"(from {ts['dagster_run_id_from']})",
    ]
    if ts.get("note"):
        lines.append(f"  note: {ts['note']}")
    for role in ("scoring", "training"):
        f = t["features"][role]
        lines.append(f"Features ({role}) {f['table']} {_v(f['version'])}, built from raw "
                     f"{_v(f['raw_version'])} in Dagster run {f['dagster_run_id']}; code "
                     f"{_fmt_code(f['code'])}")
        if f.get("note"):
            lines.append(f"  note: {f['note']}")
    for role in ("scoring", "training"):
        r = t["raw"][role]
        lines.append(f"Raw ({role}) {r['table']} {_v(r['version'])}, Dagster run "
                     f"{r.get('dagster_run_id')}; code {_fmt_code(r.get('code'))}")
        if r.get("row"):
            row = r["row"]
            lines.append(f"  row: {row.get('source_file')} line {row.get('source_line')}, sha256 "
                         f"{_short_hash(row.get('source_sha256'))}, loaded {row.get('loaded_at')}")
        for s in r.get("source_files") or []:
            lines.append(f"  source file {s['source_file']} sha256 {s['source_sha256']} "
                         f"({s['rows']} rows)")
        if r.get("note"):
            lines.append(f"  note: {r['note']}")
    lines.append(f"Code now: {_fmt_code(t['code_now'])}")
    return "\n".join(lines)


def format_training_trace(t: dict) -> str:
    """The trace of a model version's training data as lines for a person."""
    m, ts, f, r = t["model"], t["training_set"], t["features"], t["raw"]
    lines = [
        f"Model {m['name']} v{m['version']} (MLflow run {m['mlflow_run_id']}), trained in Dagster "
        f"run {m['training_dagster_run_id']} (lineage from {m['lineage_source']})",
        f"Training set {ts['table']} {_v(ts['version'])}, sha256 {_short_hash(ts['content_sha256'])}",
        f"  windows {','.join(ts['train_windows'])} (scoring {ts['scoring_window']}), built from "
        f"features {_v(ts['features_version'])} and raw {_v(ts['raw_version'])}",
        f"  committed {ts['committed_at']}, Dagster run {ts['dagster_run_id']} "
        f"(from {ts['dagster_run_id_from']})",
        f"Features {f['table']} {_v(f['version'])}, built from raw {_v(f['raw_version'])} in Dagster "
        f"run {f['dagster_run_id']}; code {_fmt_code(f['code'])}",
        f"Raw {r['table']} {_v(r['version'])}, Dagster run {r.get('dagster_run_id')}; code "
        f"{_fmt_code(r.get('code'))}",
    ]
    for note in (ts.get("note"), f.get("note"), r.get("note")):
        if note:
            lines.append(f"  note: {note}")
    for src in r.get("source_files") or []:
        lines.append(f"  source file {src['source_file']} sha256 {src['source_sha256']} "
                     f"({src['rows']} rows)")
    lines.append(f"Code now: {_fmt_code(t['code_now'])}")
    return "\n".join(lines)


def _fmt_code(code: dict | None) -> str:
    if not code:
        return "not recorded"
    parts = [f"mlops_assets {code.get('mlops_assets_version')}"]
    if code.get("git_commit"):
        dirty = " (uncommitted changes)" if code.get("git_dirty") == "true" else ""
        parts.append(f"git {code['git_commit'][:12]}{dirty}")
    if code.get("dbt_manifest_sha256"):
        parts.append(f"dbt manifest {code['dbt_manifest_sha256'][:12]}")
    return ", ".join(parts)


# --------------------------------------------------------------------------------------------
# Models by table version


def registered_models(spec: DatasetSpec | None = None) -> list[dict]:
    """Every registered version of the dataset's model with what it was trained on (from MLflow,
    the registry of record), oldest first."""
    spec = spec or current_spec()
    name = model_name(spec)
    client = _mlflow_client()
    versions = client.search_model_versions(f"name = '{name}'")
    aliases: dict[int, list[str]] = {}
    if versions:
        for alias, version in client.get_registered_model(name).aliases.items():
            aliases.setdefault(int(version), []).append(alias)
    out = []
    for mv in sorted(versions, key=lambda v: int(v.version)):
        run = client.get_run(mv.run_id)
        row = lineage_row(name, int(mv.version), run, {}, mv.creation_timestamp, "")
        out.append({**{k: row[k] for k in (
            "model_name", "model_version", "mlflow_run_id", "training_set_version",
            "training_set_sha256", "features_version", "raw_version", "training_dagster_run_id",
            )}, "registered_at": _iso(row["registered_at"]),
            "aliases": sorted(aliases.get(int(mv.version), []))})
    return out


def model_name(spec: DatasetSpec) -> str:
    return f"{spec.name}_lightgbm"  # as registered by the ``model`` asset


def models_trained_on(*, features_version: int | None = None,
                      training_set_version: int | None = None, raw_version: int | None = None,
                      model_version: int | None = None,
                      spec: DatasetSpec | None = None) -> list[dict]:
    """Registered model versions trained on the given Delta versions (all when none is given),
    or the one ``model_version``."""
    wanted = {"features_version": features_version, "training_set_version": training_set_version,
              "raw_version": raw_version, "model_version": model_version}
    return [m for m in registered_models(spec)
            if all(v is None or m[k] == v for k, v in wanted.items())]


# --------------------------------------------------------------------------------------------
# Reproduce


def _typed(value: str):
    """An MLflow parameter (a string) as the int or float it was logged from."""
    try:
        return int(value)
    except ValueError:
        return float(value)


def _shares(total: int, splits: dict) -> tuple[float, float]:
    """valid and holdout shares that give exactly the recorded split sizes out of ``total`` rows
    (``split_training_set`` takes ``int(total * share)`` rows)."""
    n_valid, n_hold = splits["valid"]["rows"], splits["holdout"]["rows"]
    return (n_valid + 0.5) / total, (n_hold + 0.5) / total


def reproduce(version: int, *, name: str | None = None, retrain: bool = True,
              spec: DatasetSpec | None = None) -> dict:
    """Rebuild model ``version``'s training set from the recorded feature table version, verify
    its content hash, and (``retrain``) train again and compare the booster with the registered
    one. Raises :class:`VersionGone` when the feature table version is gone, and
    :class:`AuditError` when anything does not match."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from mlops_assets.training import (
        SPLITS, Windows, choose_windows, matches_content_hash, split_training_set, train_booster,
    )

    spec = spec or current_spec()
    name = name or model_name(spec)
    client = _mlflow_client()
    mlflow.set_tracking_uri(home().mlflow_tracking_uri)
    mlflow.set_registry_uri(home().mlflow_tracking_uri)
    try:
        mv = client.get_model_version(name, str(version))
    except MlflowException as e:
        raise AuditError(f"{name} has no registered version {version}: {e.message}") from e
    run = client.get_run(mv.run_id)
    tags = run.data.tags
    recorded = mlflow.artifacts.load_dict(f"runs:/{mv.run_id}/training_set.json")
    features_version = _as_int(tags.get("features_delta_version",
                                        recorded.get("features_delta_version")))
    recorded_sha = tags.get("training_set_sha256") or recorded.get("content_sha256")
    if features_version is None or not recorded_sha:
        raise AuditError(f"{name} v{version} (run {mv.run_id}) did not record its feature table "
                         "version and training set hash; it cannot be reproduced.")
    ts_version = _as_int(tags.get("training_set_delta_version"))
    ts_info = (commit_info(table_uri("training_set", spec.name), ts_version)
               if ts_version is not None else None)

    feats_uri = table_uri("features", spec.name)
    features = read_version(feats_uri, features_version)
    train_windows = [w for w in (recorded.get("train_windows") or "").split(",") if w]
    scoring = recorded.get("scoring_window") or None
    windows = choose_windows(features["window"].to_list(), len(train_windows), scoring)
    if windows.train != train_windows:
        raise AuditError(f"features/{spec.name} v{features_version} gives training windows "
                         f"{windows.train}, but {name} v{version} recorded {train_windows}.")
    windows = Windows(train=train_windows, scoring=windows.scoring)
    if ts_info and ts_info.get("valid_share") and ts_info.get("holdout_share"):
        valid_share, holdout_share = float(ts_info["valid_share"]), float(ts_info["holdout_share"])
        shares_from = "training_set commit"
    elif recorded.get("splits"):
        probe = split_training_set(spec, features, windows)
        valid_share, holdout_share = _shares(probe.height, recorded["splits"])
        shares_from = "recorded split sizes"
    else:  # neither recorded: the training_set asset's defaults
        valid_share, holdout_share = 0.15, 0.15
        shares_from = "defaults"
    rebuilt = split_training_set(spec, features, windows, valid_share, holdout_share)
    verified, digest = matches_content_hash(rebuilt, recorded_sha)
    result = {
        "model": {"name": name, "version": version, "mlflow_run_id": mv.run_id},
        "features": {"table": f"features/{spec.name}", "version": features_version},
        "training_set": {
            "table": f"training_set/{spec.name}", "version": ts_version,
            "rows": rebuilt.height, "train_windows": train_windows,
            "scoring_window": windows.scoring,
            "split_sizes": {s: rebuilt.filter(pl.col("split") == s).height for s in SPLITS},
            "shares_from": shares_from,
            "recorded_sha256": recorded_sha, "rebuilt_sha256": digest,
            "commit_sha256": (ts_info or {}).get("content_sha256"),
            "verified": verified,
        },
    }
    if not verified:
        raise AuditError(
            f"The training set rebuilt from features/{spec.name} v{features_version} does not "
            f"match the one {name} v{version} was trained on: sha256 {digest[:12]} vs recorded "
            f"{recorded_sha[:12]}."
        )
    if not retrain:
        return result

    params = {k: _typed(v) for k, v in run.data.params.items()
              if k not in ("best_iteration", "features")}
    feature_names = recorded["features"]
    parts = {s: rebuilt.filter(pl.col("split") == s) for s in SPLITS}
    booster = train_booster(params, parts["train"], parts["valid"], feature_names, spec.label)
    registered = mlflow.lightgbm.load_model(f"models:/{name}/{version}")
    same = booster.model_to_string() == registered.model_to_string()
    result["booster"] = {
        "params": params,
        "best_iteration": booster.best_iteration,
        "recorded_best_iteration": _as_int(run.data.params.get("best_iteration")),
        "identical": same,
    }
    if not same:
        raise AuditError(
            f"Retraining {name} v{version} on the verified training set gave a different booster "
            f"(best iteration {booster.best_iteration} vs recorded "
            f"{run.data.params.get('best_iteration')})."
        )
    return result


def format_reproduce(r: dict) -> str:
    ts, m = r["training_set"], r["model"]
    lines = [
        f"{m['name']} v{m['version']} (MLflow run {m['mlflow_run_id']})",
        f"  training set rebuilt from {r['features']['table']} v{r['features']['version']}: "
        f"{ts['rows']} rows, windows {','.join(ts['train_windows'])} "
        f"(scoring {ts['scoring_window']}), "
        f"splits {ts['split_sizes']}",
        f"  sha256 {ts['rebuilt_sha256']} matches the one recorded at training time",
    ]
    if "booster" in r:
        b = r["booster"]
        lines.append(f"  retrained with the recorded parameters: identical booster "
                     f"(best iteration {b['best_iteration']})")
    return "\n".join(lines)
