"""Source files: fetching the bundled Elec2 data and reading declared sources into polars.

Elec2 ships inside the ``scikit-multiflow==0.4.1`` wheel on the Python package registry. The
wheel is downloaded with pip (nothing is installed from it), its hash is checked, and the CSV
member is extracted and checked too. Nothing else is fetched at run time.
"""

import hashlib
import logging
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import polars as pl

from mlops_assets.datasets import DatasetSpec

log = logging.getLogger(__name__)

ELEC2_WHEEL = "scikit_multiflow-0.4.1-cp37-cp37m-manylinux1_x86_64.whl"
ELEC2_WHEEL_SHA256 = "17842a0719992871f66f2edd475c3cf947be73d16595cb28d9ec26a79cfc58de"
ELEC2_MEMBER = "skmultiflow/data/datasets/elec.csv"
ELEC2_SHA256 = "ebdfe5480ae25a43a7d054286135e3a9484697a2850d5158a333b1578c28bb97"
ELEC2_ROWS = 45_312


class SourceError(RuntimeError):
    """A source file is missing, corrupt or unreadable."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _pip() -> list[str]:
    """A pip command: the running interpreter's, else one on PATH."""
    probe = subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True)
    if probe.returncode == 0:
        return [sys.executable, "-m", "pip"]
    for name in ("pip3", "pip"):
        found = shutil.which(name)
        if found:
            return [found]
    raise SourceError("pip is needed to fetch the Elec2 wheel and none was found.")


def fetch_elec2(dest_dir: Path) -> Path:
    """Return the verified Elec2 CSV under ``dest_dir``, downloading its wheel once if needed."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    csv_path = dest_dir / "elec2.csv"
    if csv_path.exists() and sha256_file(csv_path) == ELEC2_SHA256:
        return csv_path
    with tempfile.TemporaryDirectory(dir=dest_dir) as tmp:
        cmd = _pip() + [
            "download", "--no-deps", "--only-binary=:all:", "--python-version", "3.7",
            "--platform", "manylinux1_x86_64", "--implementation", "cp", "-d", tmp,
            "scikit-multiflow==0.4.1",
        ]
        log.info("Fetching Elec2: %s", " ".join(cmd))
        done = subprocess.run(cmd, capture_output=True, text=True)
        wheel = Path(tmp) / ELEC2_WHEEL
        if done.returncode != 0 or not wheel.exists():
            raise SourceError(f"Could not download scikit-multiflow==0.4.1:\n{done.stderr[-2000:]}")
        if (got := sha256_file(wheel)) != ELEC2_WHEEL_SHA256:
            raise SourceError(f"{wheel.name}: sha256 {got}, expected {ELEC2_WHEEL_SHA256}")
        with zipfile.ZipFile(wheel) as zf:
            data = zf.read(ELEC2_MEMBER)
    if (got := hashlib.sha256(data).hexdigest()) != ELEC2_SHA256:
        raise SourceError(f"{ELEC2_MEMBER}: sha256 {got}, expected {ELEC2_SHA256}")
    partial = csv_path.with_suffix(".partial")
    partial.write_bytes(data)
    partial.replace(csv_path)
    log.info("Elec2 saved to %s (%d bytes, sha256 verified)", csv_path, len(data))
    return csv_path


def read_source(spec: DatasetSpec, path: Path) -> pl.DataFrame:
    """Read a declared CSV source: rename columns, rebuild time, add provenance columns.

    Adds ``source_file``, ``source_sha256`` and ``source_line`` (the 1-based line in the file,
    header = line 1), and the ``window`` each row belongs to (``YYYY-MM`` of its timestamp).
    """
    try:
        df = pl.read_csv(path, infer_schema_length=10_000)
    except Exception as exc:  # polars names the column and row; keep its words, add the file
        raise SourceError(f"{path}: cannot be read as CSV: {exc}") from exc
    missing = [c for c in spec.rename if c not in df.columns]
    if missing:
        raise SourceError(f"{path}: expected columns {missing} are missing; found {df.columns}")
    df = df.rename(spec.rename)
    if spec.timestamp in df.columns and df.schema[spec.timestamp] == pl.String:
        try:
            df = df.with_columns(
                pl.col(spec.timestamp).str.to_datetime(time_unit="us", time_zone="UTC")
            )
        except Exception as exc:
            raise SourceError(f"{path}: column {spec.timestamp!r} is not a timestamp: {exc}") from exc
    if spec.timestamp not in df.columns:
        if spec.start is None or spec.step is None:
            raise SourceError(f"{path}: no column {spec.timestamp!r} and no start/step to rebuild it")
        df = df.with_columns(
            pl.datetime_range(
                spec.start, spec.start + spec.step * (df.height - 1), spec.step,
                eager=True, time_unit="us", time_zone="UTC",
            ).alias(spec.timestamp)
        )
    df = df.with_columns(
        [pl.col(c).cast(pl.Float64) for c in spec.numeric]
        + [pl.col(spec.target).cast(pl.Int64)]
    )
    return df.with_columns(
        pl.col(spec.timestamp).dt.strftime("%Y-%m").alias("window"),
        pl.lit(path.name).alias("source_file"),
        pl.lit(sha256_file(path)).alias("source_sha256"),
        (pl.int_range(pl.len(), dtype=pl.Int64) + 2).alias("source_line"),
    ).select(
        spec.timestamp, "window", *spec.numeric, *spec.categorical, spec.target,
        "source_file", "source_sha256", "source_line",
    )
