"""The dbt project (``dbt_project/``) as Dagster assets in the ``transform`` group.

The dbt source ``raw.elec2`` maps to the asset key ``["raw", "elec2"]``, so the ingestion asset
of that key is upstream of the dbt models without further wiring. dbt tests become asset checks.
"""

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, DbtProject, dbt_assets

from mlops_assets.datasets import current_spec
from mlops_assets.dbt import (
    DBT_DATASETS,
    DBT_PROJECT,
    MARTS_TO_DELTA,
    SeedHeaderChange,
    ensure_manifest,
    read_mart,
    row_counts,
    seed_header_changes,
)
from mlops_assets.resources import Lake
from mlops_assets.settings import prepare_environment
from mlops_assets.tables import write_table

GROUP_NAME = "transform"

_ASSET_RESOURCE_TYPES = {"model", "seed", "snapshot"}


class TransformTranslator(DagsterDbtTranslator):
    """Puts every dbt asset in the ``transform`` group and adds its materialization as a kind."""

    def get_asset_spec(
        self, manifest: Mapping[str, Any], unique_id: str, project: DbtProject | None
    ) -> dg.AssetSpec:
        spec = super().get_asset_spec(manifest, unique_id, project)
        props = self.get_resource_props(manifest, unique_id)
        if props.get("resource_type") not in _ASSET_RESOURCE_TYPES:
            # Sources keep their own key and group: they belong to the ingestion assets.
            return spec
        materialized = props.get("config", {}).get("materialized")
        kinds = {"sql", materialized} if materialized in ("table", "view") else {"sql"}
        return spec.replace_attributes(group_name=GROUP_NAME).merge_attributes(kinds=kinds)


def _reuse_partial_parse(target_path: Path) -> None:
    """Start the run from the parse state ``ensure_manifest()`` left, so dbt re-parses only what
    changed (dbt checks the file itself). dagster-dbt does this only from ``<project>/target``."""
    saved = DBT_PROJECT.manifest_path.parent / "partial_parse.msgpack"
    if saved.exists():
        target_path.mkdir(parents=True, exist_ok=True)
        shutil.copy2(saved, target_path / saved.name)


def _model_unique_id(event: Any) -> str | None:
    if not isinstance(event, dg.Output):
        return None
    value = event.metadata.get("unique_id")
    return value.value if isinstance(value, dg.TextMetadataValue) else None


def _with_row_counts(events: list, manifest: Mapping[str, Any]) -> list:
    """Add ``dagster/row_count`` to each model's Output.

    dagster-dbt's ``fetch_row_counts()`` counts through an in-process dbt adapter whose
    read-write DuckDB connection stays open after the step: later read-only opens of the file in
    this process fail ("different configuration"), and other processes would meet its lock. It
    also skips views. So the counts are taken here, from one short read-only connection, once
    dbt has exited.
    """
    nodes = manifest.get("nodes", {})
    relations = {}
    for event in events:
        node = nodes.get(_model_unique_id(event) or "", {})
        if node.get("resource_type") in _ASSET_RESOURCE_TYPES:
            relations[node["unique_id"]] = (node["schema"], node.get("alias") or node["name"])
    if not relations:
        return events
    counts = row_counts(relations.values())
    counted = []
    for event in events:
        unique_id = _model_unique_id(event)
        if unique_id in relations:
            row_count = counts[relations[unique_id]]
            event = event.with_metadata({**event.metadata, "dagster/row_count": row_count})
        counted.append(event)
    return counted


SEED_REFRESH_METADATA_KEY = "mlops/seed_full_refresh"


def _selected_seeds(context: dg.AssetExecutionContext, manifest: Mapping[str, Any]) -> list[str]:
    """Unique ids of the seeds whose assets this run materializes."""
    translator = TransformTranslator()
    selected = context.selected_asset_keys
    return [
        unique_id
        for unique_id, node in manifest.get("nodes", {}).items()
        if node.get("resource_type") == "seed"
        and translator.get_asset_spec(manifest, unique_id, DBT_PROJECT).key in selected
    ]


def _refresh_changed_seeds(
    context: dg.AssetExecutionContext, dbt: DbtCliResource, target_path: Path
) -> dict[str, SeedHeaderChange]:
    """Rebuild, with ``dbt seed --full-refresh``, every selected seed whose CSV header no longer
    matches its table, so that the ``dbt build`` after it can load the seed.

    A plain ``dbt seed`` truncates the old table and inserts into it, which fails (or, for
    reordered columns of one type, loads values into the wrong columns) once the header changed.
    The refresh runs without the asset context and its events are not passed on: the seed's one
    materialization comes from the ``dbt build`` that follows. Returns the refreshed seeds.
    """
    manifest = json.loads(DBT_PROJECT.manifest_path.read_text(encoding="utf-8"))
    changes = seed_header_changes(manifest, _selected_seeds(context, manifest))
    if not changes:
        return {}
    for change in changes.values():
        context.log.warning(f"{change.describe()}; rebuilding it with `dbt seed --full-refresh`.")
    names = sorted(change.seed for change in changes.values())
    invocation = dbt.cli(
        ["seed", "--select", " ".join(names), "--full-refresh"],
        target_path=target_path,
        raise_on_error=False,
    ).wait()
    if not invocation.is_successful():
        details = "; ".join(change.describe() for change in changes.values())
        raise dg.Failure(
            description=(
                f"{details}. `dbt seed --select {' '.join(names)} --full-refresh` failed, so the "
                "old table is left as it was. Fix the CSV (or the seed's column_types) and run "
                "again, or drop the table by hand and rerun."
            ),
            metadata={"dbt_error": str(invocation.get_error())},
        )
    context.log.info(f"Rebuilt seed table(s) {names} from their new CSV header.")
    return changes


def _with_seed_refresh_notes(events: list, changes: Mapping[str, SeedHeaderChange]) -> list:
    """Record on each refreshed seed's Output that it was rebuilt, with the old and new columns."""
    if not changes:
        return events
    noted = []
    for event in events:
        change = changes.get(_model_unique_id(event) or "")
        if change is not None:
            note = {
                "old_columns": list(change.old_columns),
                "new_columns": list(change.new_columns),
            }
            event = event.with_metadata(
                {**event.metadata, SEED_REFRESH_METADATA_KEY: dg.MetadataValue.json(note)}
            )
        noted.append(event)
    return noted


def _with_delta_copies(events: list, lake: Lake) -> list:
    """Copy the marts the Python assets use (``MARTS_TO_DELTA``) from the warehouse to Delta
    (``marts/<name>``), so features and training read a versioned table; the copy's version
    goes into the mart's materialization metadata."""
    out = []
    for event in events:
        unique_id = _model_unique_id(event)
        name = unique_id.rsplit(".", 1)[-1] if unique_id else None
        if name in MARTS_TO_DELTA:
            frame = read_mart(name)
            result = write_table(lake.uri("marts", name), frame, mode="overwrite", evolve_schema=True,
                                 storage_options=lake.options)
            event = event.with_metadata({**event.metadata, "delta_table": dg.MetadataValue.path(result.uri),
                                         "delta_version": result.version})
        out.append(event)
    return out


def _build_dbt_models():
    """The dbt assets, for the datasets the dbt project models."""

    @dbt_assets(
        manifest=ensure_manifest(),
        project=DBT_PROJECT,
        name="dbt_models",
        dagster_dbt_translator=TransformTranslator(),
    )
    def dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource, lake: Lake):
        """Run ``dbt build`` for the selected seeds and models: each one, then its tests. A selected
        seed whose CSV header no longer matches its table is first rebuilt (see
        :func:`_refresh_changed_seeds`).

        Events are passed on once dbt has exited (a few seconds), so that row counts can be added;
        when dbt fails, the events it did produce are still recorded before the error is raised.
        """
        h = prepare_environment()
        Path(h.duckdb_path).parent.mkdir(parents=True, exist_ok=True)
        # One artifacts folder per run and step, under the home (not the repository).
        step = f"{context.op_execution_context.op.name}-{context.run.run_id}"
        target_path = h.root / "dbt" / "runs" / step
        _reuse_partial_parse(target_path)
        refreshed = _refresh_changed_seeds(context, dbt, target_path)
        invocation = dbt.cli(["build"], context=context, target_path=target_path)
        events, error = [], None
        try:
            events.extend(invocation.stream())
        except Exception as exc:  # dbt's own failure, raised after its last event
            error = exc
        events = _with_row_counts(events, invocation.manifest)
        if error is None:
            events = _with_delta_copies(events, lake)
        yield from _with_seed_refresh_notes(events, refreshed)
        if error is not None:
            raise error

    return dbt_models


if current_spec().name in DBT_DATASETS:
    dbt_models = _build_dbt_models()
