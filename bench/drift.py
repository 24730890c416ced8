"""Drift statistics: mlops_assets.drift.detect_drift vs Evidently's DataDriftPreset.

Both run on the same seeded rows x 25 frames (20 numeric, 5 categorical; 4 numeric and 1
categorical column shifted), with Evidently forced to wasserstein / jensenshannon and the same
thresholds, as mlops_assets/reports.py configures it. Each side runs in its own process
(``python -m bench.drift --worker ours|evidently``) so its peak memory is its own; the data are
built before the clock and the memory baseline start. The per-column verdicts must be identical.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import warnings

from bench.common import Row, gib, peak_rss_bytes, reset_peak_rss, rss_bytes, run_worker, synthetic_frame

NUMERIC = [f"num_{i:02d}" for i in range(20)]
CATEGORICAL = [f"cat_{i}" for i in range(5)]
DRIFTED = ("num_00", "num_04", "num_08", "num_13", "cat_2")
THRESHOLD = 0.1


def frames(rows: int):
    reference = synthetic_frame(rows, seed=1)
    current = synthetic_frame(rows, seed=2, shift=0.5, drifted=DRIFTED)
    return reference, current


def ours(reference, current) -> dict[str, bool]:
    from mlops_assets.drift import DRIFT, detect_drift

    summary = detect_drift(reference, current, numeric=NUMERIC, categorical=CATEGORICAL,
                           numeric_threshold=THRESHOLD, categorical_threshold=THRESHOLD)
    return {c.column: c.status == DRIFT for c in summary.columns}


def evidently(reference, current) -> dict[str, bool]:
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=NUMERIC, categorical_columns=CATEGORICAL)
    preset = DataDriftPreset(columns=NUMERIC + CATEGORICAL, drift_share=0.5,
                             num_method="wasserstein", cat_method="jensenshannon",
                             num_threshold=THRESHOLD, cat_threshold=THRESHOLD)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        snapshot = Report([preset], include_tests=False).run(
            current_data=Dataset.from_pandas(current.to_pandas(), data_definition=definition),
            reference_data=Dataset.from_pandas(reference.to_pandas(), data_definition=definition),
        )
    verdicts = {}
    for metric in snapshot.dict()["metrics"]:
        config = metric["config"]
        if config.get("type", "").endswith("ValueDrift"):
            # Evidently's wasserstein and jensenshannon tests drift when score >= threshold.
            verdicts[config["column"]] = float(metric["value"]) >= config["threshold"]
    return verdicts


def _worker(which: str, rows: int) -> None:
    os.environ.setdefault("DO_NOT_TRACK", "true")
    # Import the side's libraries first, so start-up is neither timed nor counted as memory.
    if which == "evidently":
        __import__("evidently.presets")
    else:
        import mlops_assets.drift  # noqa: F401
        import scipy.stats  # noqa: F401  (detect_drift imports it on first use)
    reference, current = frames(rows)
    fn = evidently if which == "evidently" else ours
    base = rss_bytes()
    reset_ok = reset_peak_rss()
    t0 = time.perf_counter()
    verdicts = fn(reference, current)
    seconds = time.perf_counter() - t0
    peak = peak_rss_bytes()
    print(json.dumps({"seconds": seconds, "extra_bytes": max(0, peak - base) if reset_ok else None,
                      "peak_bytes": peak, "verdicts": verdicts}))


def run(rows: int, repeat: int) -> list[Row]:
    results = {}
    for which in ("ours", "evidently"):
        runs = [run_worker("drift", ["--worker", which, "--rows", str(rows)]) for _ in range(repeat)]
        results[which] = runs
    t_ours = statistics.median(r["seconds"] for r in results["ours"])
    t_ev = statistics.median(r["seconds"] for r in results["evidently"])

    def mem(which):
        vals = [r["extra_bytes"] for r in results[which] if r["extra_bytes"] is not None]
        return statistics.median(vals) if vals else None

    v_ours, v_ev = results["ours"][0]["verdicts"], results["evidently"][0]["verdicts"]
    same = v_ours == v_ev and all(r["verdicts"] == v_ours for r in results["ours"] + results["evidently"])
    drifted = sorted(c for c, d in v_ours.items() if d)
    differ = sorted(c for c in set(v_ours) | set(v_ev) if v_ours.get(c) != v_ev.get(c))
    speedup = t_ev / t_ours
    m_ours, m_ev = mem("ours"), mem("evidently")
    size = f"{rows:,} x 25"
    rows_out = [
        Row(f"drift statistics, {size} (time)",
            f"{t_ours:.2f} s, verdicts {'identical' if same else 'DIFFER'}", f"Evidently {t_ev:.2f} s", speedup,
            "Evidently / ours", ">= 20x, verdicts identical", speedup >= 20 and same,
            f"verdicts identical: {same} (drifted: {', '.join(drifted)})"
            + (f"; differ on {', '.join(differ)}" if differ else "")),
        Row(f"drift statistics, {size} (memory above the loaded data)",
            gib(m_ours) if m_ours is not None else "n/a", f"Evidently {gib(m_ev)}" if m_ev is not None else "n/a",
            (m_ev / m_ours) if m_ours and m_ev else None, "Evidently / ours", "reported", None,
            "peak RSS (VmHWM, reset before the call) minus RSS before it, in a fresh process"),
    ]
    return rows_out


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--worker", choices=["ours", "evidently"], required=True)
    p.add_argument("--rows", type=int, required=True)
    a = p.parse_args()
    _worker(a.worker, a.rows)
