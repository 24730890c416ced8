"""The dbt project as Dagster sees it, and the few helpers around it.

dagster-dbt builds its assets from ``target/manifest.json``. A fresh clone has none, and
``DbtProject.prepare_if_dev()`` only writes one under ``dagster dev``, so :func:`ensure_manifest`
runs ``dbt parse`` whenever the manifest is missing, older than the project's files, or parsed
against a warehouse file of another name. That keeps pytest, CI and ``dagster dev`` free of a
manual step.
"""

import csv
import importlib.metadata
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
from dagster_dbt import DbtCliResource, DbtProject
from filelock import FileLock
from packaging import version

from mlops_assets.settings import DBT_PROJECT_DIR, home, prepare_environment

# Folders inside the dbt project that dbt writes itself; they never make the manifest stale.
_GENERATED_DIRS = {"target", "logs", "dbt_packages"}
_PARSE_TIMEOUT_S = 300
_TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

DBT_DATASETS = frozenset({"elec2"})
"""Datasets the dbt project models (its sources and marts are written for them). Other datasets
run without the ``transform`` group."""

MARTS_TO_DELTA = ("daily_market",)
"""Marts the Python assets read: copied to Delta (``marts/<name>``) after each build."""

DBT_PROJECT = DbtProject(
    project_dir=DBT_PROJECT_DIR,
    profiles_dir=DBT_PROJECT_DIR,
    target_path=home().dbt_target_path,
)


def dbt_executable() -> str:
    """The ``dbt`` of the running interpreter's environment, else the first one on PATH.

    ``python -m pytest`` from an unactivated venv leaves the venv's ``bin`` off PATH, so a bare
    ``dbt`` would miss it or find another installation.
    """
    beside_python = Path(sys.executable).parent / ("dbt.exe" if sys.platform == "win32" else "dbt")
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("dbt")
    if found is None:
        raise FileNotFoundError(
            f"No dbt executable next to {sys.executable} or on PATH; install the project "
            "(it brings dbt-core and dbt-duckdb)."
        )
    return found


def _newest_project_file_mtime() -> float:
    target_dir = Path(DBT_PROJECT.manifest_path).parent.resolve()
    newest = 0.0
    for path in DBT_PROJECT.project_dir.rglob("*"):
        relative = path.relative_to(DBT_PROJECT.project_dir)
        if relative.parts[0] in _GENERATED_DIRS or not path.is_file():
            continue
        if path.resolve().is_relative_to(target_dir):
            continue
        newest = max(newest, path.stat().st_mtime)
    return newest


def _manifest_database(manifest_path: Path) -> str | None:
    """The DuckDB catalog name the manifest was parsed against (dbt-duckdb takes the file stem)."""
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    for node in manifest.get("nodes", {}).values():
        if node.get("resource_type") == "model":
            return node.get("database")
    return None


def _database_name(duckdb_path: str) -> str:
    # dbt-duckdb names the catalog after the file name up to its first dot.
    return Path(duckdb_path).name.lstrip(".").split(".")[0]


def manifest_is_current() -> bool:
    """Whether ``manifest.json`` exists, is newer than every project file and names the warehouse
    file in use (relation names in the manifest carry the DuckDB catalog name)."""
    manifest_path = DBT_PROJECT.manifest_path
    if not manifest_path.exists():
        return False
    if manifest_path.stat().st_mtime < _newest_project_file_mtime():
        return False
    return _manifest_database(manifest_path) in (None, _database_name(home().duckdb_path))


def _parse() -> None:
    target_path = Path(DBT_PROJECT.manifest_path).parent
    command = [
        dbt_executable(),
        "parse",
        "--quiet",
        "--project-dir",
        str(DBT_PROJECT.project_dir),
        "--profiles-dir",
        str(DBT_PROJECT.profiles_dir),
        "--target-path",
        str(target_path),
        "--log-path",
        str(target_path),
    ]
    # The profile and the sources read MLOPS_DUCKDB_PATH and MLOPS_DELTA_ROOT through env_var(),
    # and the child process inherits os.environ as prepare_environment() left it.
    completed = subprocess.run(
        command,
        cwd=DBT_PROJECT.project_dir,
        capture_output=True,
        text=True,
        timeout=_PARSE_TIMEOUT_S,
        check=False,
    )
    if completed.returncode != 0 or not DBT_PROJECT.manifest_path.exists():
        output = (completed.stdout + completed.stderr).strip()[-4000:]
        raise RuntimeError(
            f"`dbt parse` failed (exit code {completed.returncode}) in {DBT_PROJECT.project_dir}; "
            f"no manifest at {DBT_PROJECT.manifest_path}.\n{output}"
        )


def ensure_manifest() -> Path:
    """Write ``manifest.json`` with ``dbt parse`` unless a current one exists; return its path.

    A file lock keeps two processes that start together (webserver and daemon, pytest workers)
    from parsing into the same folder at once; the second one reuses the first one's result.
    """
    manifest_path = Path(DBT_PROJECT.manifest_path)
    if manifest_is_current():
        return manifest_path
    prepare_environment()
    manifest_path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(manifest_path.parent / "manifest.lock"), timeout=_PARSE_TIMEOUT_S):
        if not manifest_is_current():
            _parse()
    return manifest_path


class OfflineDbtCliResource(DbtCliResource):
    """``DbtCliResource`` that learns dbt's version without running ``dbt --version``.

    dagster-dbt 0.29 runs ``dbt --version`` before every invocation, and dbt-core answers it by
    asking pypi.org for the latest release of dbt-core and of each adapter (seen with strace:
    two HTTPS connections per run; about 3 s). The executable is the dbt-core of this
    environment, so its installed version is the answer.
    """

    @cached_property
    def _cli_version(self) -> version.Version:
        return version.parse(importlib.metadata.version("dbt-core"))


def dbt_resource() -> DbtCliResource:
    """The ``dbt`` resource: this project, its profiles.yml and the environment's dbt."""
    return OfflineDbtCliResource(project_dir=DBT_PROJECT, dbt_executable=dbt_executable())


def row_counts(relations: Iterable[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """Row counts of ``(schema, table)`` relations in the warehouse, from one short read-only
    connection. Call it only once dbt has exited: while dbt writes, the file is locked."""
    counts: dict[tuple[str, str], int] = {}
    with duckdb.connect(home().duckdb_path, read_only=True) as connection:
        for schema, table in relations:
            if not (_TABLE_NAME.match(schema) and _TABLE_NAME.match(table)):
                raise ValueError(f"Not a plain relation name: {schema!r}.{table!r}")
            row = connection.execute(f'select count(*) from "{schema}"."{table}"').fetchone()
            counts[(schema, table)] = int(row[0]) if row else 0
    return counts


def read_mart(name: str) -> pl.DataFrame:
    """Read table ``main.<name>`` from the dbt warehouse as a polars DataFrame.

    The connection is read-only and closed at once: DuckDB lets one process write a file while
    no other holds it, so a long-lived reader would block the next dbt build. Row order is
    whatever DuckDB returns; sort explicitly where it matters.
    """
    if not _TABLE_NAME.match(name):
        raise ValueError(f"Not a plain table name: {name!r}")
    path = home().duckdb_path
    if not Path(path).exists():
        raise FileNotFoundError(
            f"No DuckDB warehouse at {path}; materialize the dbt assets (group 'transform') first."
        )
    with duckdb.connect(path, read_only=True) as connection:
        tables = {
            row[0]
            for row in connection.execute(
                "select table_name from information_schema.tables where table_schema = 'main'"
            ).fetchall()
        }
        if name not in tables:
            raise LookupError(
                f"No table main.{name} in {path} (found: {sorted(tables)}); "
                "materialize the dbt assets first."
            )
        return connection.sql(f'select * from main."{name}"').pl()


@dataclass(frozen=True)
class SeedHeaderChange:
    """A seed whose CSV header no longer matches the table an earlier ``dbt seed`` created."""

    seed: str
    old_columns: tuple[str, ...]
    new_columns: tuple[str, ...]

    def describe(self) -> str:
        return (
            f"dbt seed {self.seed!r}: the warehouse table has columns {list(self.old_columns)} "
            f"but the CSV header is now {list(self.new_columns)}"
        )


def read_csv_header(path: Path, delimiter: str = ",") -> tuple[str, ...]:
    """The column names in the first line of a seed CSV (a BOM is dropped; empty file: ``()``)."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        first = next(csv.reader(handle, delimiter=delimiter), [])
    return tuple(name.strip() for name in first)


def seed_header_change(
    seed: str, csv_columns: Sequence[str], table_columns: Sequence[str] | None
) -> SeedHeaderChange | None:
    """Compare a seed's CSV header with the columns of its existing table.

    ``None`` when there is no table yet (``table_columns`` is None) or the two agree. Names are
    compared case-insensitively (DuckDB resolves unquoted identifiers that way) and in order:
    ``dbt seed`` without ``--full-refresh`` inserts into the old table, so a renamed, added,
    dropped or reordered column would fail or land in the wrong place.
    """
    if table_columns is None:
        return None
    new, old = tuple(csv_columns), tuple(table_columns)
    if [c.casefold() for c in new] == [c.casefold() for c in old]:
        return None
    return SeedHeaderChange(seed=seed, old_columns=old, new_columns=new)


def seed_header_changes(
    manifest: Mapping[str, Any], unique_ids: Iterable[str] | None = None
) -> dict[str, SeedHeaderChange]:
    """Seeds of ``manifest`` (all, or those in ``unique_ids``) whose CSV header differs from
    their table in the warehouse, keyed by unique id. One short read-only connection; no
    warehouse file yet means no seed table yet, so nothing has changed."""
    nodes = manifest.get("nodes", {})
    wanted = set(unique_ids) if unique_ids is not None else set(nodes)
    seeds = [
        node for uid, node in nodes.items()
        if uid in wanted and node.get("resource_type") == "seed"
    ]
    path = home().duckdb_path
    if not seeds or not Path(path).exists():
        return {}
    changes: dict[str, SeedHeaderChange] = {}
    with duckdb.connect(path, read_only=True) as connection:
        for node in seeds:
            table = node.get("alias") or node["name"]
            rows = connection.execute(
                "select column_name from information_schema.columns "
                "where table_schema = ? and table_name = ? order by ordinal_position",
                [node["schema"], table],
            ).fetchall()
            delimiter = (node.get("config") or {}).get("delimiter") or ","
            csv_path = Path(DBT_PROJECT.project_dir) / node["original_file_path"]
            change = seed_header_change(
                node["name"],
                read_csv_header(csv_path, delimiter),
                [row[0] for row in rows] if rows else None,
            )
            if change is not None:
                changes[node["unique_id"]] = change
    return changes
