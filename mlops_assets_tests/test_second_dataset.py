"""A second dataset of another shape runs end to end by configuration only: churn, with mixed
categorical and numeric columns, about 5 % positives, no time column, delivered in batch files.

The code location reads ``MLOPS_DATASET`` when it loads, so the run happens in a process of its
own, through the same command a user would type: ``mlops-assets run``.
"""

import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from mlops_assets.tables import read_table

DECLARATION = Path(__file__).parent / "data" / "churn" / "churn.yaml"


@pytest.fixture(scope="module")
def churn_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("churn_home")
    env = {k: v for k, v in os.environ.items()
           if k not in ("DAGSTER_HOME", "MLOPS_DELTA_ROOT", "MLOPS_DUCKDB_PATH", "MLFLOW_TRACKING_URI")}
    env.update(MLOPS_HOME=str(home), MLOPS_DATASET=str(DECLARATION))
    done = subprocess.run(
        [sys.executable, "-m", "mlops_assets.cli", "run", "--trials", "3"],
        env=env, capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return home, done.stdout


def test_every_batch_is_ingested_with_bad_rows_quarantined(churn_home):
    home, _ = churn_home
    raw = read_table(str(home / "delta" / "raw" / "churn"))
    assert sorted(raw["window"].unique()) == ["batch_01", "batch_02", "batch_03", "batch_04"]
    assert raw["customer_id"].n_unique() == raw.height
    assert 0.03 < raw["churned"].mean() < 0.08
    quarantine = home / "delta" / "quarantine" / "churn"
    if quarantine.exists():
        q = read_table(str(quarantine))
        assert raw.height + q.height == 2000
        assert q["reason"].null_count() == 0
    else:
        assert raw.height == 2000


def test_the_model_is_trained_on_earlier_batches_and_scores_the_latest(churn_home):
    home, stdout = churn_home
    ts = read_table(str(home / "delta" / "training_set" / "churn"))
    assert set(ts["window"]) == {"batch_01", "batch_02", "batch_03"}
    preds = read_table(str(home / "delta" / "predictions" / "churn"))
    assert set(preds["window"]) == {"batch_04"}
    assert preds["prediction_id"].n_unique() == preds.height
    assert preds["customer_id"].null_count() == 0
    assert "champion: version 1" in stdout


def test_no_dbt_layer_and_drift_covers_categorical_columns(churn_home):
    home, _ = churn_home
    drift = read_table(str(home / "delta" / "monitoring" / "drift"))
    assert {"plan", "region", "payment_method", "monthly_fee"} <= set(drift["column"])
    assert not (home / "warehouse" / "warehouse.duckdb").exists()
