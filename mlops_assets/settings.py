"""Where the platform keeps its state, and the environment it runs in.

Everything local lives under one home directory, ``MLOPS_HOME`` (default ``.mlops_home`` in the
project root). Each location can be overridden on its own, so the same code runs against object
storage, an MLflow server or a Postgres-backed Dagster instance by configuration only:

- ``MLOPS_HOME``: root of all local state
- ``MLOPS_DELTA_ROOT``: Delta Lake root (a path or an ``s3://``, ``az://`` ... URI)
- ``MLOPS_MLFLOW_TRACKING_URI``: MLflow tracking store and registry (SQLite by default)
- ``MLOPS_MLFLOW_ARTIFACTS``: where new MLflow experiments keep artifacts
- ``MLOPS_OPTUNA_STORAGE``: Optuna storage: a journal file path, or a database URL
- ``MLOPS_DUCKDB_PATH``: the DuckDB warehouse dbt builds into
- ``MLOPS_DBT_TARGET_PATH``: dbt's target directory (manifest, parse state)
- ``DAGSTER_HOME``: the Dagster instance (runs, event log, sensor ticks)
"""

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DBT_PROJECT_DIR = PROJECT_ROOT / "dbt_project"

# Telemetry of every library is off unless a user turns it back on explicitly.
_OFFLINE_ENV = {
    "DAGSTER_DISABLE_TELEMETRY": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    "GIT_PYTHON_REFRESH": "quiet",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}

_DAGSTER_YAML = """\
telemetry:
  enabled: false
nux:
  enabled: false
"""


@dataclass(frozen=True)
class Home:
    """Resolved locations of the platform's state."""

    root: Path

    @property
    def delta_root(self) -> str:
        return os.environ.get("MLOPS_DELTA_ROOT", str(self.root / "delta"))

    @property
    def mlflow_tracking_uri(self) -> str:
        # Not MLFLOW_TRACKING_URI: MLflow itself writes that variable whenever a store is chosen.
        return os.environ.get(
            "MLOPS_MLFLOW_TRACKING_URI", f"sqlite:///{self.root / 'mlflow' / 'mlflow.db'}"
        )

    @property
    def mlflow_artifact_location(self) -> str:
        return os.environ.get(
            "MLOPS_MLFLOW_ARTIFACTS", (self.root / "mlflow" / "artifacts").as_uri()
        )

    @property
    def optuna_storage(self) -> str:
        """MLOPS_OPTUNA_STORAGE, else the home's journal file. A home made before the journal was
        the default keeps its SQLite database, so that its studies resume."""
        if "MLOPS_OPTUNA_STORAGE" in os.environ:
            return os.environ["MLOPS_OPTUNA_STORAGE"]
        legacy = self.root / "optuna" / "optuna.db"  # a home made before the journal default
        if legacy.exists() and not (self.root / "optuna" / "journal.log").exists():
            return f"sqlite:///{legacy}"
        return str(self.root / "optuna" / "journal.log")

    @property
    def duckdb_path(self) -> str:
        return os.environ.get("MLOPS_DUCKDB_PATH", str(self.root / "warehouse" / "warehouse.duckdb"))

    @property
    def dbt_target_path(self) -> str:
        return os.environ.get("MLOPS_DBT_TARGET_PATH", str(DBT_PROJECT_DIR / "target"))

    @property
    def dagster_home(self) -> Path:
        return Path(os.environ.get("DAGSTER_HOME", str(self.root / "dagster")))

    @property
    def reports_dir(self) -> Path:
        return self.root / "reports"

    @property
    def downloads_dir(self) -> Path:
        return self.root / "downloads"


def home() -> Home:
    """The home directory from ``MLOPS_HOME``, defaulting to ``.mlops_home`` in the project."""
    return Home(Path(os.environ.get("MLOPS_HOME", str(PROJECT_ROOT / ".mlops_home"))).resolve())


def prepare_environment() -> Home:
    """Switch telemetry off, create the home's directories and point every tool at them.

    Safe to call many times. Values a user already exported win over the defaults.
    """
    for key, value in _OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    # Assets record data versions through Output/MaterializeResult(data_version=...), which Dagster
    # 1.13 flags as beta on every materialization; the flag is not news to a person reading a run.
    warnings.filterwarnings("ignore", message=r"Parameter `data_version` of initializer")
    h = home()
    for sub in ("delta", "mlflow/artifacts", "optuna", "warehouse", "reports", "downloads"):
        (h.root / sub).mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MLOPS_HOME", str(h.root))
    os.environ.setdefault("DAGSTER_HOME", str(h.dagster_home))
    # dbt's profile and sources read these through env_var().
    os.environ.setdefault("MLOPS_DELTA_ROOT", h.delta_root)
    os.environ.setdefault("MLOPS_DUCKDB_PATH", h.duckdb_path)
    dagster_home = Path(os.environ["DAGSTER_HOME"])
    dagster_home.mkdir(parents=True, exist_ok=True)
    dagster_yaml = dagster_home / "dagster.yaml"
    if not dagster_yaml.exists():
        dagster_yaml.write_text(_DAGSTER_YAML)
    return h
