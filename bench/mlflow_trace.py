"""MLflow overhead per training, and the ``trace`` command's wall time.

MLflow: against a SQLite tracking store and a file artifact store in a temporary directory, with
MLflow already imported and one untimed training logged first (schema creation), each timed
training does what the ``model`` asset does with MLflow: start a run, log params, tags and
metrics, ``mlflow.lightgbm.log_model`` with ``pip_requirements`` given and a registered model
name (which registers a new version). The baseline is the same booster saved with
``booster.save_model`` to a file.

trace: ``python -m mlops_assets.cli trace <prediction id>`` in a fresh process, start-up
included, on a home built by ``python -m mlops_assets.cli demo --trials 2 --replay-through none``
(or an existing home given with ``--trace-home``) whose predictions table is then grown to
``--trace-rows`` rows (default ten million) the way the ``predictions`` asset writes: one
``replace_where`` commit per window and model version through ``write_table``, rows in id order,
ids from :func:`mlops_assets.prediction_ids.prediction_ids`. The traced prediction is one of the
added rows, made by the home's real model version, so the whole trace (lineage, training set,
features, raw) is answered. Baseline: ``python -c pass``.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from bench.common import PYTHON, ROOT, Row, median_time


def mlflow_overhead(repeat: int) -> list[Row]:
    import logging

    import lightgbm as lgb
    import mlflow

    logging.getLogger("mlflow").setLevel(logging.ERROR)

    rng = np.random.default_rng(5)
    X = rng.normal(size=(20_000, 40))
    y = (X[:, 0] + rng.normal(size=20_000) > 0).astype(int)
    booster = lgb.train({"objective": "binary", "verbose": -1, "seed": 0}, lgb.Dataset(X, y), 100)
    tmp = Path(tempfile.mkdtemp(prefix="bench_mlflow_"))
    params = {"learning_rate": 0.05, "num_leaves": 31, "min_data_in_leaf": 20, "feature_fraction": 0.9,
              "bagging_fraction": 0.8, "lambda_l2": 1.0, "best_iteration": 100, "features": 40}
    metrics = {"auc": 0.91, "log_loss": 0.33, "accuracy": 0.85, "precision": 0.84, "recall": 0.8,
               "f1": 0.82, "brier": 0.11}
    try:
        mlflow.set_tracking_uri(f"sqlite:///{tmp / 'mlflow.db'}")
        mlflow.set_registry_uri(f"sqlite:///{tmp / 'mlflow.db'}")
        exp = mlflow.create_experiment("bench", artifact_location=(tmp / "artifacts").as_uri())

        def one():
            with mlflow.start_run(experiment_id=exp):
                mlflow.log_params(params)
                mlflow.set_tags({"training_set_delta_version": "3", "features_delta_version": "5"})
                mlflow.log_metrics(metrics)
                mlflow.lightgbm.log_model(booster, name="model",
                                          pip_requirements=[f"lightgbm=={lgb.__version__}"],
                                          registered_model_name="bench_model")

        t_ml, _ = median_time(one, repeat, warmup=True)
        t_save, _ = median_time(lambda: booster.save_model(str(tmp / "bare.txt")), repeat, warmup=True)
    finally:
        mlflow.set_tracking_uri(None)
        shutil.rmtree(tmp, ignore_errors=True)
    return [Row("MLflow per training: params, tags, metrics, log_model (+pip_requirements), register",
                f"{t_ml:.3f} s", f"booster.save_model {t_save:.3f} s", t_ml - t_save, "ours - bare (s)",
                "< 0.5 s", t_ml < 0.5, "SQLite store in a temporary directory; MLflow already imported")]


def _build_home(home: Path, env: dict) -> None:
    done = subprocess.run([PYTHON, "-m", "mlops_assets.cli", "demo", "--trials", "2",
                           "--replay-through", "none"], cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"demo failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")


def _a_prediction_id(env: dict) -> str:
    code = ("from mlops_assets.settings import home; import polars as pl; "
            "print(pl.read_delta(home().delta_root + '/predictions/elec2')['prediction_id'][0])")
    done = subprocess.run([PYTHON, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"could not read a prediction id:\n{done.stderr[-2000:]}")
    return done.stdout.strip().splitlines()[-1]


def pad_predictions(uri: str, rows: int, per_window: int = 100_000, seed: int = 0) -> str:
    """Add ``rows`` predictions to the table at ``uri`` in synthetic monthly windows after the
    real ones (2001-01, 2001-02, ...), ``per_window`` rows each, copying the model and run columns
    of the table's first row. Returns the id of a row in the middle window."""
    import polars as pl

    from mlops_assets.prediction_ids import prediction_ids
    from mlops_assets.tables import write_table

    real = pl.read_delta(uri)
    first = real.row(0, named=True)
    name, version = first["model_name"], int(first["model_version"])
    rng = np.random.default_rng(seed)
    n_windows = -(-rows // per_window)
    middle = None
    for i in range(n_windows):
        n = min(per_window, rows - i * per_window)
        year, month = 2001 + i // 12, 1 + i % 12
        window = f"{year}-{month:02d}"
        start = pl.datetime(year, month, 1, time_zone="UTC")
        frame = pl.DataFrame({"i": np.arange(n)}).select(
            (start + pl.duration(seconds=pl.col("i") * 25)).alias("ts"),
            pl.lit(window).alias("window"),
        )
        score = rng.random(n)
        frame = frame.with_columns(
            prediction_ids(name, version, frame, ("ts",)),
            (pl.col("ts") + pl.duration(days=1)).alias("label_at"),
            pl.Series("score", score),
            pl.Series("predicted_label", (score >= 0.5).astype("int64")),
            *[pl.lit(first[c], real.schema[c]).alias(c)
              for c in ("model_name", "model_version", "mlflow_run_id", "features_version",
                        "scored_at", "dagster_run_id")],
        )
        frame = frame.select([c for c in real.columns if c in frame.columns]).sort("prediction_id")
        write_table(uri, frame, mode="overwrite",
                    replace_where=f"window = '{window}' AND model_version = {version}",
                    commit_metadata={"dagster_run_id": "bench-padding"})
        if i == n_windows // 2:
            middle = frame["prediction_id"][n // 2]
    return middle


def trace_time(repeat: int, elec2: Path, trace_home: str | None,
               trace_rows: int = 10_000_000) -> list[Row]:
    tmp = None
    if trace_home and trace_rows:  # the predictions table is grown: work on a copy
        tmp = Path(tempfile.mkdtemp(prefix="bench_trace_home_"))
        home = tmp / "home"
        shutil.copytree(trace_home, home, symlinks=True)
    elif trace_home:
        home = Path(trace_home)
    else:
        tmp = Path(tempfile.mkdtemp(prefix="bench_trace_home_"))
        home = tmp
        (home / "downloads").mkdir(parents=True)
        shutil.copyfile(elec2, home / "downloads" / "elec2.csv")
    env = {**os.environ, "MLOPS_HOME": str(home), "DAGSTER_HOME": str(home / "dagster")}
    for var in ("MLOPS_DELTA_ROOT", "MLOPS_DUCKDB_PATH", "MLOPS_OPTUNA_STORAGE", "MLOPS_MLFLOW_ARTIFACTS",
                "MLOPS_MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_URI"):
        env.pop(var, None)
    try:
        t0 = time.perf_counter()
        if tmp is not None and not trace_home:
            _build_home(home, env)
        built = time.perf_counter() - t0
        t0 = time.perf_counter()
        uri = str(home / "delta" / "predictions" / "elec2")
        pid = pad_predictions(uri, trace_rows) if trace_rows else _a_prediction_id(env)
        padded = time.perf_counter() - t0

        def timed(cmd):
            times = []
            for _ in range(repeat):
                t = time.perf_counter()
                done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
                times.append(time.perf_counter() - t)
                if done.returncode != 0:
                    raise RuntimeError(f"{cmd} failed:\n{done.stderr[-2000:]}")
            return statistics.median(times)

        subprocess.run([PYTHON, "-m", "mlops_assets.cli", "trace", pid], cwd=ROOT, env=env,
                       capture_output=True)  # untimed: warms the OS file cache
        t_trace = timed([PYTHON, "-m", "mlops_assets.cli", "trace", pid])
        t_py = timed([PYTHON, "-c", "pass"])
        lookup = ("import time, json; from mlops_assets.audit import find_prediction, trace; "
                  f"find_prediction({pid!r}); t = time.perf_counter(); find_prediction({pid!r}); "
                  "a = time.perf_counter() - t; trace({pid!r}); t = time.perf_counter(); "
                  f"trace({pid!r}); print(json.dumps([a, time.perf_counter() - t]))")
        done = subprocess.run([PYTHON, "-c", lookup.replace("{pid!r}", repr(pid))], cwd=ROOT,
                              env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"in-process trace failed:\n{done.stderr[-2000:]}")
        t_find, t_whole = json.loads(done.stdout.strip().splitlines()[-1])
        table_rows = pl.scan_delta(uri).select(pl.len()).collect().item()
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    note = (f"fresh process each time, start-up included; predictions table of {table_rows:,} rows; "
            f"in one warm process the row lookup takes {1000 * t_find:.0f} ms and the whole trace "
            f"{1000 * t_whole:.0f} ms")
    if tmp is not None and not trace_home:
        note += f"; home built by `demo --trials 2 --replay-through none` in {built:.0f} s (not timed)"
    if trace_rows:
        note += f"; {trace_rows:,} rows added in {padded:.0f} s (not timed)"
    return [Row(f"`trace <prediction id>` wall time, {table_rows:,} predictions", f"{t_trace:.2f} s",
                f"python -c pass {t_py:.2f} s", t_trace / t_py, "ours / bare", "< 1.5 s",
                t_trace < 1.5, note),
            Row(f"trace row lookup in a warm process, {table_rows:,} predictions",
                f"{1000 * t_find:.0f} ms", "–", None, "", "< 1 s", t_find < 1.0,
                "find_prediction after one untimed call: partition, file and row-group pruning "
                "by the id's window and model version prefix")]
