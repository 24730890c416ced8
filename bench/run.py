"""`make bench`: the benchmarks of issue 7, as ratios measured in one run on this machine.

    python bench/run.py                 # full run: every target at its stated size
    python bench/run.py --quick         # a few minutes: 100k-row drift, smaller frames, no 10M run
    python bench/run.py --memory-rows 0 # the full run without the 10M-row peak-memory run
    python bench/run.py --size 500000   # drift frame size
    python bench/run.py --only drift,delta --repeat 5
    python bench/run.py --elec2 /path/to/elec2.csv   # use a local copy (its sha256 is checked)

Every measurement is repeated (``--repeat``, default 3) and the median is quoted. The table is
printed and written to docs/benchmarks.md (``--out``). Everything runs under a temporary
MLOPS_HOME, removed at the end; nothing touches .mlops_home.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MEASUREMENTS = ("drift", "delta", "features", "scoring", "mlflow", "trace", "main-job")
LIBRARIES = ("polars", "deltalake", "lightgbm", "mlflow", "evidently", "dagster", "pandas", "numpy")


def _args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes, for a run of a few minutes")
    p.add_argument("--size", type=int, help="rows of each drift frame (default 1,000,000; quick 100,000)")
    p.add_argument("--rows", type=int, help="rows for the Delta, features and scoring measurements "
                                            "(default 1,000,000; quick 200,000)")
    p.add_argument("--repeat", type=int, default=3, help="runs per measurement; the median is quoted")
    p.add_argument("--only", help=f"comma-separated subset of {','.join(MEASUREMENTS)}")
    p.add_argument("--main-job", action="store_true", help=argparse.SUPPRESS)  # now always in the run
    p.add_argument("--main-job-rows", type=int,
                   help="rows of the scaled Elec2 for the main job (default 1,000,000; quick 200,000)")
    p.add_argument("--main-job-repeat", type=int, default=3,
                   help="product/direct pairs for the main job (median quoted; 0: only the memory run)")
    p.add_argument("--trials", type=int, default=5, help="Optuna trials in the main-job runs")
    p.add_argument("--memory-rows", type=int,
                   help="the main job's peak memory at this many rows, one product run "
                        "(default 10,000,000; quick and 0: not measured)")
    p.add_argument("--elec2", help="a local Elec2 CSV (else fetched with mlops_assets.sources.fetch_elec2)")
    p.add_argument("--trace-home", help="an existing MLOPS_HOME to trace a prediction in (else one is built; "
                                        "it is copied before its predictions table is grown)")
    p.add_argument("--trace-rows", type=int, help="predictions added before the trace is timed "
                                                  "(default 10,000,000; quick 1,000,000; 0: none)")
    p.add_argument("--note", default="", help="a line about this run for the markdown file "
                                              "(e.g. that the machine was shared)")
    p.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"), help="markdown file to write")
    a = p.parse_args(argv)
    a.size = a.size or (100_000 if a.quick else 1_000_000)
    a.rows = a.rows or (200_000 if a.quick else 1_000_000)
    if a.trace_rows is None:
        a.trace_rows = 1_000_000 if a.quick else 10_000_000
    a.main_job_rows = a.main_job_rows or (200_000 if a.quick else 1_000_000)
    if a.memory_rows is None:
        a.memory_rows = 0 if a.quick else 10_000_000
    if a.quick:
        a.main_job_repeat = min(a.main_job_repeat, 1)
    if a.repeat < 1 or a.main_job_repeat < 0:
        p.error("--repeat must be >= 1 and --main-job-repeat >= 0 (0: only --memory-rows)")
    a.only = set(a.only.split(",")) if a.only else set(MEASUREMENTS)
    unknown = a.only - set(MEASUREMENTS)
    if unknown:
        p.error(f"unknown measurement(s): {', '.join(sorted(unknown))}")
    return a


def _ratio(r) -> str:
    if r.ratio is None:
        return "–"
    if "%" in r.ratio_text:
        return f"{r.ratio:+.0f} % ({r.ratio_text.replace(', %', '')})"
    if "(s)" in r.ratio_text:
        return f"{r.ratio:+.3f} s ({r.ratio_text.replace(' (s)', '')})"
    return f"{r.ratio:.2f}x ({r.ratio_text})"


def _verdict(r) -> str:
    return "–" if r.passed is None else ("pass" if r.passed else "**fail**")


def table(rows) -> str:
    lines = ["| measurement | ours | baseline | ratio | target | result |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.measurement} | {r.ours} | {r.baseline} | {_ratio(r)} | {r.target} | {_verdict(r)} |")
    return "\n".join(lines)


def notes(rows) -> str:
    return "\n".join(f"- *{r.measurement}*: {r.note}" for r in rows if r.note)


def versions() -> str:
    out = []
    for lib in LIBRARIES:
        try:
            out.append(f"{lib} {version(lib)}")
        except Exception:  # noqa: BLE001 - a missing library is reported, not fatal
            out.append(f"{lib} (not installed)")
    return ", ".join(out)


def machine() -> str:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        load = "?"
    return (f"{platform.machine()}, {cpus} CPUs usable, load average before the run {load}, "
            f"Python {platform.python_version()}")


def main(argv=None) -> int:
    a = _args(argv)
    tmp_home = Path(tempfile.mkdtemp(prefix="bench_home_"))
    os.environ["MLOPS_HOME"] = str(tmp_home)
    os.environ["DAGSTER_HOME"] = str(tmp_home / "dagster")
    for var in ("MLOPS_DELTA_ROOT", "MLOPS_DUCKDB_PATH", "MLOPS_OPTUNA_STORAGE", "MLOPS_MLFLOW_ARTIFACTS",
                "MLOPS_MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_URI"):
        os.environ.pop(var, None)
    for var, value in (("DAGSTER_DISABLE_TELEMETRY", "1"), ("MLFLOW_DISABLE_TELEMETRY", "true"),
                       ("DO_NOT_TRACK", "true"), ("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")):
        os.environ.setdefault(var, value)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))

    from bench.common import Row, elec2_scaled, find_elec2

    started = time.perf_counter()
    where = machine()
    rows: list[Row] = []
    failures: list[str] = []

    def step(name: str, fn):
        if name not in a.only:
            return
        t0 = time.perf_counter()
        print(f"[bench] {name} ...", flush=True)
        try:
            got = fn()
        except Exception as e:  # noqa: BLE001 - one broken measurement must not hide the others
            failures.append(f"{name}: {type(e).__name__}: {str(e)[:500]}")
            print(f"[bench] {name} FAILED: {e}", flush=True)
            return
        rows.extend(got)
        print(f"[bench] {name} done in {time.perf_counter() - t0:.0f} s", flush=True)
        for r in got:
            print(f"    {r.measurement}: {r.ours} vs {r.baseline} -> {_ratio(r)} [{_verdict(r)}]", flush=True)

    try:
        elec2 = raw = feats = None
        if a.only & {"features", "scoring", "trace", "main-job"}:
            elec2 = find_elec2(a.elec2)
        if a.only & {"features", "scoring"}:
            raw = elec2_scaled(elec2, a.rows)
        if "scoring" in a.only:
            from mlops_assets.datasets import ELEC2
            from mlops_assets.features import build_features
            feats = build_features(ELEC2, raw)

        from bench import delta, drift, features, mlflow_trace, scoring

        step("drift", lambda: drift.run(a.size, a.repeat))
        step("delta", lambda: delta.run(a.rows, a.repeat))
        step("features", lambda: features.run(raw, a.repeat))
        step("scoring", lambda: scoring.run(feats, a.repeat))
        step("mlflow", lambda: mlflow_trace.mlflow_overhead(a.repeat))
        step("trace", lambda: mlflow_trace.trace_time(a.repeat, elec2, a.trace_home,
                                                                a.trace_rows))
        from bench import main_job

        step("main-job", lambda: main_job.run(elec2, a.main_job_rows, a.main_job_repeat, a.trials,
                                              a.memory_rows or None))
    finally:
        shutil.rmtree(tmp_home, ignore_errors=True)

    took = time.perf_counter() - started
    kind = "quick run (--quick)" if a.quick else "full run"
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    header = (f"{kind}, {when}, {took / 60:.1f} min; drift frames {a.size:,} rows, other frames "
              f"{a.rows:,} rows; median of {a.repeat}")
    if "main-job" in a.only:
        if a.main_job_repeat:
            header += (f"; main job {a.main_job_rows:,} rows, {a.trials} trials, median of "
                       f"{a.main_job_repeat} product/direct pairs")
        if a.memory_rows:
            header += f"; main-job peak memory at {a.memory_rows:,} rows ({a.trials} trials, one run)"
    header += f"\n\nCommand: `bench/run.py {' '.join(sys.argv[1:] if argv is None else argv)}`"
    header += f"\n\nMachine: {where}\n\nLibraries: {versions()}"
    if a.quick:
        header = ("**Quick run**: smaller sizes than the targets are stated for, so the ratios are "
                  "indicative only.\n\n" + header)
    if a.note:
        header = f"**{a.note}**\n\n" + header
    body = table(rows)
    print("\n" + header + "\n\n" + body)
    if failures:
        print("\nFailed measurements:\n" + "\n".join(f"- {f}" for f in failures))
    if a.out:
        write_doc(Path(a.out), header, body, notes(rows), failures)
        print(f"\nwritten to {a.out}")
    return 1 if failures else 0


PREAMBLE = """# Benchmarks

`make bench` (or `.venv/bin/python bench/run.py`) measures the platform against the libraries it
wraps and against its peers, as ratios taken in one run on the same machine, each repeated with
the median quoted. `make bench BENCH_ARGS=--quick` is a smaller run of a few minutes;
`BENCH_ARGS="--only drift --size 500000"` picks measurements and sizes. The data are seeded
synthetic frames (drift, Delta) and Elec2 resampled with noise to scale (features, scoring, main
job). This file is rewritten by each run; the command is quoted under "Latest run".

Elec2 is fetched into a temporary home with `mlops_assets.sources.fetch_elec2` (network); pass
`--elec2 PATH` to use a local copy instead (its sha256 is checked). The `trace` measurement builds
its own home with `demo --trials 2 --replay-through none` (about a minute, not timed) unless
`--trace-home` names one.

What each side does:

- *Drift*: `mlops_assets.drift.detect_drift` and Evidently's `DataDriftPreset` (forced to the
  same methods and thresholds) on the same frames, each side in a fresh process with its
  libraries imported before the clock starts; the per-column verdicts must be identical. Ours
  sorts each numeric column once per side, reads null-free columns straight into numpy and
  compares columns on as many threads as there are usable CPUs (at most 4), since the work is
  numpy and polars code that releases the GIL. Evidently runs as it comes.
- *Delta*: both sides start from the same polars frame and write with delta-rs' default writer
  (same Parquet layout and compression). The bare write is `write_deltalake(uri, df.to_arrow())`;
  `write_table` adds its schema checks, commit metadata, creation check and row count. The bare
  read is `pl.read_parquet` of the very files the table holds; `read_table` adds the existence
  check and the Delta log (opened once).
- *Main job*: Elec2 resampled to 1M rows, declared as a dataset
  (`elec2_scaled`, 23 monthly windows, Parquet source; not modelled by dbt, so the `transform`
  group does not run). The product side is `mlops-assets run --trials N` in a fresh process on a
  SQLite Dagster instance whose stores exist before the clock starts (ingestion with validation
  and quarantine, features and leakage check, training set, Optuna on its journal file, model logged and registered in MLflow, evaluation, gate,
  champion, predictions with provenance ids, drift with its Evidently report, performance); per-step
  times come from the Dagster event log. The direct side does the same compute with the same
  functions and libraries and nothing else: `pl.read_parquet`, `write_deltalake` of each table,
  the product's polars feature expressions, the same Optuna study in memory, the same LightGBM
  training and predictions, the drift statistics and the Evidently report on the same sample. No
  Dagster, validation, MLflow, provenance or registry. Start-up imports are excluded on both sides.
- *Peak memory* (`--memory-rows`, 10M by default): one product run of the main job at that
  size; the job process's high-water RSS (VmHWM).
"""


def write_doc(path: Path, header: str, body: str, notes_md: str, failures: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = PREAMBLE + "\n## Latest run\n\n" + header + "\n\n" + body + "\n"
    if notes_md:
        text += "\n### Notes\n\n" + notes_md + "\n"
    if failures:
        text += "\n### Measurements that failed\n\n" + "\n".join(f"- {f}" for f in failures) + "\n"
    path.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
