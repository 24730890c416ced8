"""Resources: where tables, runs, studies and reports live. Each is configuration only."""

import os
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
from pydantic import Field

from mlops_assets import __version__


class Lake(dg.ConfigurableResource):
    """The Delta Lake root. A local path by default; an object-store URI with storage options
    (e.g. ``s3://bucket/lake`` with credentials from the environment) works the same way."""

    root_uri: str = Field(description="Root of all Delta tables: a path or an object-store URI.")
    storage_options: dict[str, str] = Field(default_factory=dict, description="delta-rs storage options.")

    def uri(self, *parts: str) -> str:
        return "/".join([self.root_uri.rstrip("/"), *parts])

    @property
    def options(self) -> dict[str, str] | None:
        return self.storage_options or None


class MlflowTracking(dg.ConfigurableResource):
    """An MLflow tracking store and model registry (SQLite by default, a server by URI)."""

    tracking_uri: str = Field(description="MLflow tracking URI, e.g. sqlite:///.../mlflow.db or http://host:5000.")
    artifact_location: str = Field(description="Where new experiments store artifacts.")
    experiment_name: str = "mlops_assets"
    ui_url: str = Field(default="http://127.0.0.1:5000", description="MLflow UI base URL for links in metadata.")

    def setup(self):
        import mlflow

        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.tracking_uri)
        exp = mlflow.get_experiment_by_name(self.experiment_name)
        if exp is None:
            exp_id = mlflow.create_experiment(self.experiment_name, artifact_location=self.artifact_location)
        else:
            exp_id = exp.experiment_id
        return mlflow, exp_id

    def client(self):
        from mlflow import MlflowClient

        self.setup()
        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    @contextmanager
    def start_run(self, context: dg.AssetExecutionContext, run_name: str):
        """An MLflow run tagged with the Dagster run, asset and code version, so it can be
        found from Dagster (``tags.dagster_run_id = '<run id>'``) and back."""
        mlflow, exp_id = self.setup()
        tags = {
            "dagster_run_id": context.run.run_id,
            "dagster_asset_key": context.asset_key.to_user_string(),
            "dagster_job": context.job_name,
            "mlops_assets_version": __version__,
        }
        with mlflow.start_run(experiment_id=exp_id, run_name=run_name, tags=tags) as run:
            yield run

    def run_url(self, experiment_id: str, run_id: str) -> str:
        return f"{self.ui_url}/#/experiments/{experiment_id}/runs/{run_id}"

    def model_url(self, name: str, version: str | int) -> str:
        return f"{self.ui_url}/#/models/{name}/versions/{version}"


class OptunaStudies(dg.ConfigurableResource):
    """Optuna storage: a journal file under the home by default; a database URL (e.g.
    ``postgresql://…``) lets workers on several machines share a study."""

    storage: str


class ReportStore(dg.ConfigurableResource):
    """Directory for human-readable reports (Evidently HTML, model cards)."""

    root: str

    def path(self, *parts: str) -> Path:
        p = Path(self.root, *parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p


def default_resources() -> dict:
    """Resources built from the home directory and the environment (see ``settings``)."""
    from mlops_assets.settings import prepare_environment

    h = prepare_environment()
    from mlops_assets.dbt import dbt_resource

    return {
        "lake": Lake(root_uri=h.delta_root),
        "mlflow": MlflowTracking(
            tracking_uri=h.mlflow_tracking_uri,
            artifact_location=h.mlflow_artifact_location,
            experiment_name=os.environ.get("MLOPS_MLFLOW_EXPERIMENT", "mlops_assets"),
            ui_url=os.environ.get("MLOPS_MLFLOW_UI_URL", "http://127.0.0.1:5000"),
        ),
        "optuna": OptunaStudies(storage=h.optuna_storage),
        "reports": ReportStore(root=str(h.reports_dir)),
        "dbt": dbt_resource(),
    }
