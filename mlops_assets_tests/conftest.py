"""Shared fixtures: every test session gets its own home directory, so nothing touches .mlops_home."""

import atexit
import os
import shutil
import tempfile
from pathlib import Path

# Set before any mlops_assets import: the home, and with it every location, is read from here.
_SESSION_HOME = Path(tempfile.mkdtemp(prefix="mlops_home_"))
os.environ["MLOPS_HOME"] = str(_SESSION_HOME)
atexit.register(shutil.rmtree, _SESSION_HOME, ignore_errors=True)
for _var in ("DAGSTER_HOME", "MLOPS_DELTA_ROOT", "MLOPS_DUCKDB_PATH", "MLFLOW_TRACKING_URI",
             "MLOPS_OPTUNA_STORAGE", "MLOPS_MLFLOW_ARTIFACTS"):
    os.environ.pop(_var, None)
