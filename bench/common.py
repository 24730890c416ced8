"""Shared helpers of the benchmarks: timing, peak memory in a child process, data, result rows."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


@dataclass
class Row:
    measurement: str
    ours: str
    baseline: str
    ratio: float | None
    ratio_text: str  # how the ratio reads, e.g. "baseline / ours"
    target: str
    passed: bool | None  # None: no target (reported only)
    note: str = ""


def median_time(fn, repeat: int, warmup: bool = False) -> tuple[float, list[float]]:
    """Median wall time of ``fn()`` over ``repeat`` calls (after one untimed call if ``warmup``)."""
    if warmup:
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def run_worker(module: str, args: list[str], env: dict | None = None, timeout: float | None = None) -> dict:
    """Run ``python -m bench.<module> args`` in a fresh process; it prints one JSON line last."""
    done = subprocess.run(
        [PYTHON, "-m", f"bench.{module}", *args], cwd=ROOT, capture_output=True, text=True,
        env={**os.environ, **(env or {})}, timeout=timeout,
    )
    if done.returncode != 0:
        raise RuntimeError(f"bench.{module} {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def rss_bytes() -> int:
    """Resident set size of this process now (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    """High-water mark of this process's resident set size (Linux: VmHWM)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0: write 5 to clear_refs); False if refused."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def mib(n: float) -> str:
    return f"{n / 2**20:.0f} MiB"


# --------------------------------------------------------------------------------------------
# data


def synthetic_frame(rows: int, seed: int, numeric: int = 20, categorical: int = 5,
                    shift: float = 0.0, drifted: tuple[str, ...] = ()) -> pl.DataFrame:
    """``rows`` x (numeric + categorical) columns from a seeded generator. Columns named in
    ``drifted`` move by ``shift`` (numeric: mean shift in units of std; categorical: the first
    category's share grows)."""
    rng = np.random.default_rng(seed)
    data: dict[str, np.ndarray] = {}
    for i in range(numeric):
        name = f"num_{i:02d}"
        loc = shift if name in drifted else 0.0
        if i % 3 == 0:
            data[name] = rng.normal(loc, 1.0, rows)
        elif i % 3 == 1:
            data[name] = rng.lognormal(loc, 0.5, rows)
        else:
            data[name] = rng.integers(0, 100, rows).astype(np.float64) + loc * 30
    cats = np.array(["a", "b", "c", "d", "e", "f"])
    for i in range(categorical):
        name = f"cat_{i}"
        p = np.array([0.3, 0.2, 0.2, 0.1, 0.1, 0.1])
        if name in drifted:
            p = np.array([0.3 + shift, 0.2, 0.2, 0.1, 0.1, 0.1])
            p = p / p.sum()
        data[name] = cats[rng.choice(len(cats), rows, p=p)]
    return pl.DataFrame(data)


ELEC2_START = "1996-05-07T00:00:00"


def elec2_scaled(csv: Path, rows: int, seed: int = 0) -> pl.DataFrame:
    """Elec2 resampled with noise to ``rows`` rows, in the shape the raw table has (the declared
    columns plus ``ts`` every 30 minutes from Elec2's start and ``window``). Rows are drawn in
    blocks of whole days (so lags and rolling windows see day-shaped series), the numeric
    readings get small Gaussian noise clipped to [0, 1], and ``price_up`` is kept."""
    from mlops_assets.datasets import ELEC2
    from mlops_assets.sources import read_source

    src = read_source(ELEC2, csv)
    numeric = [c for c in ELEC2.numeric if c != "period"]
    src = src.select("period", *numeric, ELEC2.target)
    days = src.height // 48
    need_days = -(-rows // 48)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, days, need_days)
    idx = (picks[:, None] * 48 + np.arange(48)[None, :]).ravel()[:rows]
    out = src[idx]
    noise = {c: np.clip(out[c].to_numpy() + rng.normal(0, 0.01, rows), 0.0, 1.0) for c in numeric}
    ts = pl.datetime_range(pl.lit(ELEC2_START).str.to_datetime(time_zone="UTC"),
                           pl.lit(ELEC2_START).str.to_datetime(time_zone="UTC")
                           + pl.duration(minutes=30 * (rows - 1)),
                           interval="30m", eager=True, time_zone="UTC")
    return out.with_columns(
        *[pl.Series(c, v) for c, v in noise.items()],
        ts.alias("ts"),
    ).with_columns(pl.col("ts").dt.strftime("%Y-%m").alias("window"))


def find_elec2(explicit: str | None) -> Path:
    """The Elec2 CSV: ``--elec2`` when given (copied into the temporary home, where its sha256 is
    checked), else fetched by ``mlops_assets.sources.fetch_elec2`` into the temporary home."""
    import shutil

    from mlops_assets.settings import home
    from mlops_assets.sources import fetch_elec2

    dest = home().downloads_dir
    dest.mkdir(parents=True, exist_ok=True)
    if explicit:
        shutil.copyfile(explicit, dest / "elec2.csv")
    return fetch_elec2(dest)
