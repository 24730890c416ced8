"""Retention: how long Delta tables keep removed data files and log entries, and a vacuum that
keeps every table version a registered model still needs.

Both settings are explicit configuration, read from the environment:

=======================================  ==========================================================
``MLOPS_DELTA_VACUUM_RETENTION_HOURS``   a data file no longer in a table's current version is
                                         removed by ``mlops-assets vacuum`` once it has been out of
                                         it this long (default 168, Delta's own default)
``MLOPS_DELTA_LOG_RETENTION_DAYS``       log entries (needed to read an old version, and holding
                                         each commit's metadata) older than this may be cleaned
                                         up by ``mlops-assets vacuum`` (default 30)
=======================================  ==========================================================

``vacuum`` writes both into each table's properties (``delta.deletedFileRetentionDuration``,
``delta.logRetentionDuration``) and turns off the log cleanup that writers would otherwise run
on their own after a checkpoint (``delta.enableExpiredLogCleanup = false``), so that log entries
are only ever removed here, where the needs of registered models are known.

A registered model version needs the ``features`` version it was trained on (to rebuild its
training set: ``mlops-assets reproduce``), its ``training_set`` version and its ``raw`` version
(for a trace back to the source files). Their files are kept (delta-rs' ``keep_versions``) and
their log entries are not cleaned up, unless ``--force``.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone

from mlops_assets.audit import VersionGone, _open, commit_info, missing_files, table_uri
from mlops_assets.datasets import DatasetSpec, current_spec

VACUUM_RETENTION_ENV = "MLOPS_DELTA_VACUUM_RETENTION_HOURS"
LOG_RETENTION_ENV = "MLOPS_DELTA_LOG_RETENTION_DAYS"
DEFAULT_VACUUM_RETENTION_HOURS = 168
DEFAULT_LOG_RETENTION_DAYS = 30


def _setting(name: str, default: int, env) -> int:
    text = env.get(name)
    if text in (None, ""):
        return default
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise ValueError(f"{name} must be a whole number of 0 or more, not {text!r}")
    return value


@dataclass(frozen=True)
class RetentionPolicy:
    vacuum_retention_hours: int = DEFAULT_VACUUM_RETENTION_HOURS
    log_retention_days: int = DEFAULT_LOG_RETENTION_DAYS

    @classmethod
    def from_env(cls, env=None) -> RetentionPolicy:
        env = os.environ if env is None else env
        return cls(_setting(VACUUM_RETENTION_ENV, DEFAULT_VACUUM_RETENTION_HOURS, env),
                   _setting(LOG_RETENTION_ENV, DEFAULT_LOG_RETENTION_DAYS, env))

    def table_properties(self) -> dict[str, str]:
        return {
            "delta.deletedFileRetentionDuration": f"interval {self.vacuum_retention_hours} hours",
            "delta.logRetentionDuration": f"interval {self.log_retention_days} days",
            "delta.enableExpiredLogCleanup": "false",
        }


@dataclass
class TableReport:
    table: str
    removed: list[str] = field(default_factory=list)
    """Data files removed (or, in a dry run, that would be)."""
    protected: list[str] = field(default_factory=list)
    """Files past retention that were kept because a needed version holds them."""
    needed: dict[int, list[str]] = field(default_factory=dict)
    """Version -> the registered model versions that need it."""
    lost: list[int] = field(default_factory=list)
    """Needed versions that can no longer be read (after a forced vacuum, or gone before)."""
    log_cleanup: str = ""
    properties_set: bool = False

    def as_dict(self) -> dict:
        return asdict(self)


def needed_versions(spec: DatasetSpec | None = None) -> dict[str, dict[int, list[str]]]:
    """``{"features/elec2": {3: ["elec2_lightgbm v2"]}, ...}``: the table versions each registered
    model version was trained on, from the MLflow registry."""
    from mlops_assets.audit import registered_models

    spec = spec or current_spec()
    needs: dict[str, dict[int, list[str]]] = {}
    for m in registered_models(spec):
        ref = f"{m['model_name']} v{m['model_version']}"
        for layer, key in (("features", "features_version"),
                           ("training_set", "training_set_version"), ("raw", "raw_version")):
            if m[key] is not None:
                needs.setdefault(f"{layer}/{spec.name}", {}).setdefault(m[key], []).append(ref)
    return needs


def tables(spec: DatasetSpec) -> list[str]:
    return [f"raw/{spec.name}", f"quarantine/{spec.name}", f"features/{spec.name}",
            f"training_set/{spec.name}", f"predictions/{spec.name}", "monitoring/drift",
            "monitoring/performance", "registry/promotions", "registry/model_lineage"]


def _readable(uri: str, version: int) -> bool:
    try:
        table = _open(uri, version)
    except VersionGone:
        return False
    return table is not None and not missing_files(table)


def vacuum_table(name: str, policy: RetentionPolicy, needed: dict[int, list[str]], *,
                 force: bool = False, dry_run: bool = False) -> TableReport | None:
    """Vacuum one table (``layer/name``) and clean up its log per ``policy``, keeping the data
    files and log entries of the ``needed`` versions unless ``force``. None when there is no
    table."""
    uri = table_uri(*name.split("/"))
    table = _open(uri)
    if table is None:
        return None
    report = TableReport(table=name, needed=dict(sorted(needed.items())))
    if not dry_run:
        want = policy.table_properties()
        have = table.metadata().configuration
        if any(have.get(k) != v for k, v in want.items()):
            table.alter.set_table_properties(want)
            report.properties_set = True
            table = _open(uri)
    keep = [v for v in sorted(needed) if _readable(uri, v)]
    report.lost = [v for v in sorted(needed) if v not in keep]
    hours = policy.vacuum_retention_hours
    every = table.vacuum(hours, dry_run=True, enforce_retention_duration=False)
    if force or not keep:
        report.removed = sorted(every)
        if not dry_run and every:
            table.vacuum(hours, dry_run=False, enforce_retention_duration=False)
    else:
        allowed = table.vacuum(hours, dry_run=True, enforce_retention_duration=False,
                               keep_versions=keep)
        report.removed = sorted(allowed)
        report.protected = sorted(set(every) - set(allowed))
        if not dry_run and allowed:
            table.vacuum(hours, dry_run=False, enforce_retention_duration=False,
                         keep_versions=keep)
    report.log_cleanup = _clean_log(uri, table, policy, keep, force=force, dry_run=dry_run)
    if not dry_run:
        report.lost = [v for v in sorted(needed) if not _readable(uri, v)]
    return report


def _clean_log(uri: str, table, policy: RetentionPolicy, keep: list[int], *, force: bool,
               dry_run: bool) -> str:
    if dry_run:
        return "not run (dry run)"
    cutoff = datetime.now(timezone.utc) - timedelta(days=policy.log_retention_days)
    at_risk = []
    for version in keep:
        info = commit_info(uri, version)
        if info and datetime.fromtimestamp(info["timestamp"] / 1000, timezone.utc) < cutoff:
            at_risk.append(version)
    if at_risk and not force:
        return (f"skipped: version(s) {at_risk} are needed and older than the log retention "
                f"({policy.log_retention_days} days)")
    table.cleanup_metadata()
    return "done"


def vacuum_all(policy: RetentionPolicy | None = None, *, force: bool = False,
               dry_run: bool = False, spec: DatasetSpec | None = None) -> list[TableReport]:
    """Vacuum every table of the dataset and the shared ones (see :func:`vacuum_table`)."""
    spec = spec or current_spec()
    policy = policy or RetentionPolicy.from_env()
    needs = needed_versions(spec)
    reports = []
    for name in tables(spec):
        report = vacuum_table(name, policy, needs.get(name, {}), force=force, dry_run=dry_run)
        if report is not None:
            reports.append(report)
    return reports


def format_report(policy: RetentionPolicy, reports: list[TableReport]) -> str:
    lines = [
        f"Retention: files out of a table's current version for {policy.vacuum_retention_hours} h "
        f"are removed ({VACUUM_RETENTION_ENV}); log entries are kept {policy.log_retention_days} "
        f"days ({LOG_RETENTION_ENV})"
    ]
    for r in reports:
        text = f"  {r.table:26} removed {len(r.removed)} file(s)"
        if r.protected:
            needed = ", ".join(f"v{v} ({', '.join(refs)})" for v, refs in r.needed.items())
            text += f"; kept {len(r.protected)} file(s) that registered models need: {needed}"
        text += f"; log cleanup {r.log_cleanup}"
        lines.append(text)
        if r.lost:
            refs = "; ".join(f"v{v} for {', '.join(r.needed.get(v, []))}" for v in r.lost)
            lines.append(f"    versions no longer readable: {refs}")
    return "\n".join(lines)
