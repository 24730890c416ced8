"""The main job on a large Elec2 vs the same compute done directly with the libraries.

Data: Elec2 resampled with noise (``bench.common.elec2_scaled``) to ``rows`` rows, written as
one Parquet file with a ``ts`` column. The time step is chosen so that the rows span the same
23 monthly windows at any size (1 min at 1M rows, 6 s at 10M), and the horizon is 48 steps as
in Elec2 (24 h there), so the features have Elec2's shape. A YAML declaration
(``elec2_scaled``) points at the file; the dataset is not modelled by dbt, so the ``transform``
group does not run here.

Product (``--worker product``, a fresh process): what ``mlops-assets run --trials N`` does, in
process: one Dagster run ingests every window (validation, quarantine, Delta), a second
materializes everything downstream (features, training set, Optuna tuning on SQLite, model
logged and registered in MLflow, evaluation, champion gate, predictions with provenance, drift
with its Evidently report, performance), on a persistent SQLite Dagster instance. Step times come
from the run's event log (STEP_START to STEP_SUCCESS).

Direct (``--worker direct``, a fresh process): the same compute with no Dagster, no validation,
no MLflow and no provenance: ``pl.read_parquet`` of the file, ``write_deltalake`` of the raw
rows (partitioned by window), features with the product's own polars expressions
(``features.build_features``), the training-set split, the same Optuna study (same seed, search
space, pruning and trial count; in-memory storage), the final LightGBM model with the same
parameters and early stopping, predictions on the holdout and the scoring window, each table
written with ``write_deltalake``, and the drift statistics plus the Evidently report on the same
sample. Both sides import their libraries before the clock starts.

The product's home is created before the clock starts (Dagster instance storages, MLflow
database), as a deployment's stores exist before its jobs run, and MLflow's once-per-process scan
of the installed packages (made the first time a model is logged) is made then too, as start-up.

Peak memory: the worker's own high-water RSS (VmHWM) and that of any child it waited for.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from datetime import timedelta
from pathlib import Path

import polars as pl

from bench.common import PYTHON, ROOT, Row, elec2_scaled, gib, peak_rss_bytes

START = "2000-01-01T00:00:00"
SPAN_MINUTES = 1_000_000  # 1M rows at one minute: about 23 months
HORIZON_STEPS = 48


def step_for(rows: int) -> timedelta:
    return timedelta(seconds=max(1, round(SPAN_MINUTES * 60 / rows)))


def _fmt_step(step: timedelta) -> str:
    s = int(step.total_seconds())
    return f"{s // 60}min" if s % 60 == 0 else f"{s}s"


def write_dataset(elec2_csv: Path, rows: int, folder: Path) -> Path:
    """The scaled file and its declaration in ``folder``; returns the declaration's path."""
    folder.mkdir(parents=True, exist_ok=True)
    step = step_for(rows)
    df = elec2_scaled(elec2_csv, rows)
    start = pl.lit(START).str.to_datetime(time_zone="UTC")
    ts = pl.datetime_range(start, start + pl.duration(seconds=int(step.total_seconds()) * (rows - 1)),
                           interval=f"{int(step.total_seconds())}s", eager=True, time_zone="UTC")
    df = df.drop("window", "ts").with_columns(ts.alias("ts"))
    data = folder / "elec2_scaled.parquet"
    df.write_parquet(data)
    months = df["ts"].dt.strftime("%Y-%m").unique().sort()
    end_year, end_month = map(int, months[-1].split("-"))
    end = f"{end_year + end_month // 12}-{end_month % 12 + 1:02d}-01"
    decl = folder / "elec2_scaled.yaml"
    decl.write_text(f"""# Elec2 resampled with noise to {rows:,} rows (bench/main_job.py)
name: elec2_scaled
source:
  path: {data.name}
  format: parquet
target: price_up
timestamp: ts
step: {_fmt_step(step)}
horizon: {_fmt_step(step * HORIZON_STEPS)}
numeric: [period, nswprice, nswdemand, vicprice, vicdemand, transfer]
ranges:
  period: [0, 1]
  nswprice: [0, 1]
  nswdemand: [0, 1]
  vicprice: [0, 1]
  vicdemand: [0, 1]
  transfer: [0, 1]
differences:
  - [nswprice, vicprice]
  - [nswdemand, vicdemand]
windows:
  kind: monthly
  start: {START[:10]}
  end: {end}
quarantine:
  max_share: 0.0
""", encoding="utf-8")
    return decl


# --------------------------------------------------------------------------------------------
# workers (fresh processes; MLOPS_HOME and MLOPS_DATASET come from the parent)


def _quiet():
    warnings.filterwarnings("ignore")
    import logging

    logging.getLogger("mlops_assets").setLevel(logging.WARNING)


def _child_peak() -> int:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024


def product_worker(trials: int) -> dict:
    _quiet()
    import dagster as dg

    from mlops_assets import cli

    # Import what the steps import lazily, so the clock measures the job, not start-up.
    import evidently.presets  # noqa: F401
    import lightgbm  # noqa: F401
    import mlflow  # noqa: F401
    import optuna  # noqa: F401
    import scipy.stats  # noqa: F401

    cli.defs()  # the code location, loaded once as a code server or the CLI does
    # The home's stores exist before the job, as in any deployment that has run before: the
    # Dagster instance's SQLite storages and the MLflow database (about 2 s of schema creation).
    from mlops_assets.settings import prepare_environment

    h = prepare_environment()
    cli.instance().get_run_records(limit=1)
    mlflow.MlflowClient(h.mlflow_tracking_uri).search_experiments()
    # MLflow scans every installed distribution once per process (about 0.7 s here) the first
    # time a model is logged, to check its requirements: start-up work, like the imports.
    from mlflow.utils.requirements_utils import _init_packages_to_modules_map

    _init_packages_to_modules_map()
    t0 = time.perf_counter()
    cli.main(["run", "--trials", str(trials)])
    seconds = time.perf_counter() - t0

    instance = cli.instance()
    steps: dict[str, float] = {}
    for record in instance.get_run_records():
        starts = {}
        for entry in instance.all_logs(record.dagster_run.run_id):
            ev = entry.dagster_event
            if ev is None or ev.step_key is None:
                continue
            if ev.event_type_value == "STEP_START":
                starts[ev.step_key] = entry.timestamp
            elif ev.event_type_value == "STEP_SUCCESS" and ev.step_key in starts:
                steps[ev.step_key] = steps.get(ev.step_key, 0.0) + entry.timestamp - starts[ev.step_key]
    return {"seconds": seconds, "steps": steps, "peak_bytes": peak_rss_bytes(),
            "child_peak_bytes": _child_peak()}


def direct_worker(trials: int) -> dict:
    _quiet()
    from deltalake import write_deltalake

    from mlops_assets.datasets import current_spec
    from mlops_assets.drift import detect_drift
    from mlops_assets.features import build_features, feature_columns
    from mlops_assets.reports import write_evidently_report
    from mlops_assets.settings import home
    from mlops_assets.sources import source_paths
    from mlops_assets.training import binary_metrics, choose_windows, split_training_set, train_booster, tune

    import evidently.presets  # noqa: F401
    import lightgbm  # noqa: F401
    import optuna  # noqa: F401
    import scipy.stats  # noqa: F401

    spec = current_spec()
    home().root.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="direct_", dir=home().root))
    steps: dict[str, float] = {}

    def timed(name):
        class _T:
            def __enter__(self):
                self.t = time.perf_counter()

            def __exit__(self, *exc):
                steps[name] = time.perf_counter() - self.t
        return _T()

    t0 = time.perf_counter()
    with timed("raw"):
        (path,) = source_paths(spec, home().downloads_dir)
        raw = pl.read_parquet(path).with_columns(pl.col("ts").dt.strftime("%Y-%m").alias("window"))
        write_deltalake(str(root / "raw"), raw.to_arrow(), mode="overwrite", partition_by=["window"])
    with timed("features"):
        raw = pl.read_delta(str(root / "raw"))
        feats = build_features(spec, raw)
        write_deltalake(str(root / "features"), feats.to_arrow(), mode="overwrite")
    with timed("training_set"):
        feats = pl.read_delta(str(root / "features"))
        windows = choose_windows(feats["window"].to_list(), 3)
        ts = split_training_set(spec, feats, windows)
        write_deltalake(str(root / "training_set"), ts.to_arrow(), mode="overwrite")
    cols = feature_columns(spec, ts.drop("split"))
    parts = {s: ts.filter(pl.col("split") == s) for s in ("train", "valid", "holdout")}
    with timed("hyperparameters"):
        study = tune(parts["train"], parts["valid"], cols, spec.label, n_trials=trials,
                     storage=None, study_name="direct")
        best = study.best_params
    with timed("model"):
        booster = train_booster(best, parts["train"], parts["valid"], cols, spec.label, record={})
        for split in ("valid", "holdout"):
            p = booster.predict(parts[split].select(cols).to_numpy(), num_iteration=booster.best_iteration)
            binary_metrics(parts[split][spec.label].to_numpy(), p)
        booster.save_model(str(root / "model.txt"))
    with timed("predictions"):
        window = feats["window"].max()
        rows = feats.filter(pl.col("window") == window)
        score = booster.predict(rows.select(cols).to_numpy())
        out = rows.select(*spec.key_columns, "window").with_columns(
            pl.Series("score", score), pl.Series("predicted_label", (score >= 0.5).astype("int64")))
        write_deltalake(str(root / "predictions"), out.to_arrow(), mode="overwrite", partition_by=["window"])
    with timed("drift_report"):
        columns = [*spec.numeric, *spec.categorical]
        summary = detect_drift(ts.select(columns), rows.select(columns), numeric=list(spec.numeric),
                               categorical=list(spec.categorical))
        write_evidently_report(ts.select(columns), rows.select(columns), list(spec.numeric),
                               list(spec.categorical), root / "drift.html", sample_rows=20_000)
        write_deltalake(str(root / "drift"), summary.to_frame().to_arrow(), mode="overwrite")
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "steps": steps, "peak_bytes": peak_rss_bytes(),
            "child_peak_bytes": _child_peak(), "rows": raw.height, "trials": len(study.trials)}


# --------------------------------------------------------------------------------------------
# the parent


def _run(which: str, home_dir: Path, decl: Path, trials: int, timeout: float) -> dict:
    env = {**os.environ, "MLOPS_HOME": str(home_dir), "DAGSTER_HOME": str(home_dir / "dagster"),
           "MLOPS_DATASET": str(decl)}
    for var in ("MLOPS_DELTA_ROOT", "MLOPS_DUCKDB_PATH", "MLOPS_OPTUNA_STORAGE", "MLOPS_MLFLOW_ARTIFACTS",
                "MLOPS_MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_URI"):
        env.pop(var, None)
    done = subprocess.run([PYTHON, "-m", "bench.main_job", "--worker", which, "--trials", str(trials)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"main job {which} worker failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(elec2_csv: Path, rows: int, repeat: int, trials: int, memory_rows: int | None,
        timeout: float = 1800) -> list[Row]:
    work = Path(tempfile.mkdtemp(prefix="bench_main_job_"))
    out: list[Row] = []
    try:
        if repeat:
            out.append(_overhead(elec2_csv, work, rows, repeat, trials, timeout))
        if memory_rows:
            mdecl = write_dataset(elec2_csv, memory_rows, work / f"data_{memory_rows}")
            t0 = time.perf_counter()
            try:
                r = _run("product", work / "home_memory", mdecl, trials, 2 * timeout)
            except (RuntimeError, subprocess.TimeoutExpired) as e:
                out.append(Row(f"main job peak memory, {memory_rows:,} rows", "not measured", "–",
                               None, "", "< 8 GiB", False, f"the run did not finish: {str(e)[:300]}"))
            else:
                peak = max(r["peak_bytes"], r["child_peak_bytes"])
                out.append(Row(
                    f"main job peak memory, Elec2 scaled to {memory_rows:,} rows", gib(peak), "–", None, "",
                    "< 8 GiB", peak < 8 * 2**30,
                    "high-water RSS (VmHWM) of the job's process, or of a child it waited for if higher; "
                    f"the run took {r['seconds']:.0f} s ({time.perf_counter() - t0:.0f} s with start-up)"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def _overhead(elec2_csv: Path, work: Path, rows: int, repeat: int, trials: int, timeout: float) -> Row:
    decl = write_dataset(elec2_csv, rows, work / f"data_{rows}")
    results = {"product": [], "direct": []}
    for i in range(repeat):  # alternate, each in a fresh home
        for which in ("product", "direct"):
            results[which].append(_run(which, work / f"home_{which}_{i}", decl, trials, timeout))
            shutil.rmtree(work / f"home_{which}_{i}", ignore_errors=True)
    t_p = statistics.median(r["seconds"] for r in results["product"])
    t_d = statistics.median(r["seconds"] for r in results["direct"])
    overhead = t_p / t_d - 1
    p_steps = _median_steps(results["product"])
    d_steps = _median_steps(results["direct"])
    breakdown = "; ".join(f"{k} {v:.1f} s" for k, v in sorted(p_steps.items(), key=lambda kv: -kv[1]))
    direct_bd = "; ".join(f"{k} {v:.1f} s" for k, v in d_steps.items())
    return Row(
        f"main job, Elec2 scaled to {rows:,} rows, {trials} Optuna trials",
        f"product {t_p:.1f} s", f"direct {t_d:.1f} s", overhead * 100, "product / direct - 1, %",
        "<= 30 %", overhead <= 0.30,
        f"product steps (Dagster event log, median): {breakdown}. Direct steps: {direct_bd}. "
        f"Product peak RSS {gib(max(r['peak_bytes'] for r in results['product']))}, direct "
            f"{gib(max(r['peak_bytes'] for r in results['direct']))}.")


def _median_steps(results: list[dict]) -> dict[str, float]:
    keys = {k for r in results for k in r["steps"]}
    return {k: statistics.median(r["steps"].get(k, 0.0) for r in results) for k in keys}


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--worker", choices=["product", "direct"], required=True)
    p.add_argument("--trials", type=int, required=True)
    a = p.parse_args()
    got = product_worker(a.trials) if a.worker == "product" else direct_worker(a.trials)
    sys.stdout.flush()
    print(json.dumps(got))
