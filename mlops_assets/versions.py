"""Code versions and data versions of the assets, so that Dagster can tell what is stale.

**Code version** (``code_version=`` on each asset): a digest of what decides the asset's data,

* the Python source of the modules that compute it (its ``defs`` module and the plain-function
  modules it calls), parsed and dumped without docstrings, so comments, docstrings and formatting
  do not count and any change to the code does;
* the dataset declaration (the YAML file's bytes), which sets columns, windows and rules;
* the versions of the libraries that compute it (e.g. LightGBM for the model).

It reads ``<first 12 hex of sha256>`` and is computed when the definitions load. Nobody has to
remember to bump it, and a change that cannot alter data (the Delta write path in ``tables.py``,
resources, logging) is deliberately left out. The dbt assets get theirs from dagster-dbt: a
hash of each model's SQL (seeds: the file checksum). Dagster has no code version for asset
checks; a check runs with its asset or is re-run by its own condition.

**Data version** (``data_version=`` on each materialization): what the materialization produced,

* for a Delta table: ``delta:v<version>@<commit time ms>`` of the commit the write made (or of
  the current version when it committed nothing), so new data is a new data version, an empty
  batch is not, and a table re-created from scratch does not repeat an old one;
* for the model: the registered model version; for the champion: the version holding the alias;
  for the hyperparameters: a digest of the parameters.

Dagster records each dependency's data version with every materialization, so when an upstream
asset gets a new data version, or an asset's code version changes, the UI marks what is downstream
of it stale (and the ``code_version_changed`` / ``data_version_changed`` automation conditions
see it).
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:
    import dagster as dg

    from mlops_assets.tables import WriteResult


class _DropDocstrings(ast.NodeTransformer):
    def _strip(self, node):
        self.generic_visit(node)
        body = getattr(node, "body", None)
        if (body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
        return node

    visit_Module = visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _strip


@lru_cache(maxsize=None)
def source_digest(module: str) -> str:
    """sha256 of ``module``'s source as parsed, without docstrings (comments and layout never
    reach the AST)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        raise ValueError(f"no Python source for module {module!r}")
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    dump = ast.dump(_DropDocstrings().visit(tree), annotate_fields=False, include_attributes=False)
    return hashlib.sha256(dump.encode()).hexdigest()


@lru_cache(maxsize=None)
def _declaration_digest(path: str | None) -> str:
    if not path:
        return "-"
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return "-"


def _library_version(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:
        return "-"


def asset_code_version(modules: Iterable[str], libraries: Iterable[str] = (),
                       declaration: str | None = None) -> str:
    """The code version of an asset computed by ``modules`` with ``libraries`` (distribution
    names) for the dataset declared in the YAML file ``declaration`` (see the module doc)."""
    parts = {
        "modules": {m: source_digest(m) for m in sorted(set(modules))},
        "libraries": {d: _library_version(d) for d in sorted(set(libraries))},
        "declaration": _declaration_digest(declaration),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:12]


def delta_data_version(result: WriteResult, storage_options: dict | None = None) -> dg.DataVersion:
    """The data version of a Delta table after a write: its version and that commit's time."""
    import dagster as dg

    from mlops_assets.audit import commit_info

    if result.version is None:  # nothing was ever written
        return dg.DataVersion("delta:none")
    info = commit_info(result.uri, result.version) if not storage_options else None
    stamp = (info or {}).get("timestamp")
    if stamp is None:
        from deltalake import DeltaTable

        history = DeltaTable(result.uri, storage_options=storage_options).history(1)
        stamp = history[0].get("timestamp") if history else None
    return dg.DataVersion(f"delta:v{result.version}@{stamp}")


def value_data_version(value) -> dg.DataVersion:
    """A data version for a small JSON-able value: a digest of it."""
    import dagster as dg

    text = json.dumps(value, sort_keys=True, default=str)
    return dg.DataVersion(hashlib.sha256(text.encode()).hexdigest()[:16])


def code_version_for(*modules: str, libraries: Iterable[str] = ()) -> str:
    """:func:`asset_code_version` for the dataset this code location serves."""
    from mlops_assets.datasets import current_spec

    return asset_code_version(modules, libraries, current_spec().declared_in)
