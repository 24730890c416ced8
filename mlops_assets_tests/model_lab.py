"""A small, fast stand-in for the platform's model half: a synthetic feature table in Delta, the
real training, registry and Optuna resources on files under a temporary directory, and a real
Dagster instance. Shared by test_training.py and test_registry.py."""

import functools
import os
import shutil
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl

from mlops_assets.datasets import current_spec
from mlops_assets.defs.features import features, no_single_feature_leak
from mlops_assets.defs.registry import champion, promotion_gate
from mlops_assets.defs.training import evaluation, hyperparameters, model, training_set
from mlops_assets.resources import Lake, MlflowTracking, OptunaStudies, ReportStore
from mlops_assets.settings import prepare_environment
from mlops_assets.tables import write_table

prepare_environment()  # telemetry off, as for the real code location

SPEC = current_spec()
WINDOWS = ("2024-01", "2024-02", "2024-03", "2024-04")
ROWS_PER_WINDOW = 200
# ``features`` is never materialized here (its table is written directly); it is in the graph
# for lineage and for its leakage check.
GRAPH = [features, no_single_feature_leak, training_set, hyperparameters, model, evaluation,
         promotion_gate, champion]


def synthetic_features(seed: int = 0) -> pl.DataFrame:
    """A feature table shaped like the real one: four monthly windows of 200 rows, the declared
    numeric inputs plus two derived ones, and a label that they predict with AUC about 0.8."""
    rng = np.random.default_rng(seed)
    n = len(WINDOWS) * ROWS_PER_WINDOW
    step = timedelta(hours=3)
    window = np.repeat(WINDOWS, ROWS_PER_WINDOW)
    month_start = {w: datetime(int(w[:4]), int(w[5:]), 1, tzinfo=timezone.utc) for w in WINDOWS}
    ts = [month_start[w] + (i % ROWS_PER_WINDOW) * step for i, w in enumerate(window)]
    cols = {c: rng.uniform(0, 1, n) for c in SPEC.numeric}
    logit = 3 * (cols["nswprice"] - 0.5) + 2 * (cols["nswdemand"] - 0.5) - 2 * (cols["vicprice"] - 0.5)
    label = (logit + rng.normal(0, 0.8, n) > 0).astype(np.int64)
    return pl.DataFrame({
        SPEC.timestamp: pl.Series(ts, dtype=pl.Datetime("us", "UTC")),
        "window": window,
        **cols,
        "hour": pl.Series([t.hour for t in ts], dtype=pl.Int8),
        "nswprice_minus_vicprice": cols["nswprice"] - cols["vicprice"],
        SPEC.label: label,
        "label_at": pl.Series(ts, dtype=pl.Datetime("us", "UTC")) + SPEC.horizon,
    })


def keep_mlflow_environment():
    """Generator for a module fixture: put back MLflow's URI variables afterwards.

    ``mlflow.set_tracking_uri`` (called by the MlflowTracking resource) also exports
    ``MLFLOW_TRACKING_URI``, which ``settings.home()`` honours, so without this the next test
    module's default resources would point at this module's temporary store."""
    names = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    saved = {name: os.environ.get(name) for name in names}
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@functools.cache
def _migrated_mlflow_db() -> Path:
    """An empty, already migrated MLflow database: migrating a new one takes seconds, copying it
    takes nothing."""
    from mlflow import MlflowClient

    path = Path(tempfile.mkdtemp(prefix="mlflow_template_")) / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


class Lab:
    """Resources rooted in one directory, and helpers to run the training graph against them."""

    def __init__(self, root: Path, instance: dg.DagsterInstance):
        self.root, self.instance = root, instance
        db = root / "mlflow.db"
        shutil.copy(_migrated_mlflow_db(), db)
        self.tracking_uri = f"sqlite:///{db}"
        self.artifacts = root / "artifacts"
        self.resources = {
            "lake": Lake(root_uri=str(root / "delta")),
            "mlflow": MlflowTracking(tracking_uri=self.tracking_uri,
                                     artifact_location=self.artifacts.as_uri()),
            "optuna": OptunaStudies(storage=f"sqlite:///{root / 'optuna.db'}"),
            "reports": ReportStore(root=str(root / "reports")),
        }

    def write_features(self, df: pl.DataFrame | None = None) -> None:
        write_table(self.uri("features", SPEC.name), synthetic_features() if df is None else df,
                    mode="overwrite", evolve_schema=True)

    def uri(self, *parts: str) -> str:
        return self.resources["lake"].uri(*parts)

    def materialize(self, selection: list[str] | dg.AssetSelection, *, trials: int = 3,
                    gate: dict | None = None, raise_on_error: bool = True) -> dg.ExecuteInProcessResult:
        ops = {}
        if isinstance(selection, list) and "hyperparameters" in selection:
            ops["hyperparameters"] = {"config": {"n_trials": trials}}
        if gate is not None:  # the check runs with its asset, evaluation
            ops["evaluation_promotion_gate"] = {"config": gate}
        return dg.materialize(
            GRAPH, selection=selection, resources=self.resources, instance=self.instance,
            run_config={"ops": ops}, raise_on_error=raise_on_error,
        )

    def client(self):
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    def meta(self, key: str) -> dict:
        event = self.instance.get_latest_materialization_event(dg.AssetKey(key))
        return {k: v.value for k, v in event.asset_materialization.metadata.items()}
