"""dbt seeds whose CSV header changed after an earlier ``dbt seed`` (case c19).

The unit tests read the case's two CSV versions; the integration test gives the warehouse a seed
table with an older header and checks that the next materialization rebuilds it, says so in the
log and on the materialization, and keeps the asset key."""

import json
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from mlops_assets.dbt import (
    DBT_PROJECT,
    dbt_resource,
    read_csv_header,
    read_mart,
    seed_header_change,
    seed_header_changes,
)
from mlops_assets.defs.transform import SEED_REFRESH_METADATA_KEY, dbt_models
from mlops_assets.resources import Lake
from mlops_assets.settings import prepare_environment

C19 = Path(__file__).parent / "cases" / "c19_seed_header_change"
SEED = "half_hour_slots"
SEED_KEY = dg.AssetKey([SEED])
SEED_COLUMNS = ["slot", "slot_start", "tariff_band"]


def test_c19_header_change_is_detected_with_old_and_new_columns():
    old = read_csv_header(C19 / "plan_codes_v1.csv")
    new = read_csv_header(C19 / "plan_codes_v2.csv")
    assert (old, new) == (("id", "value"), ("id", "status"))

    change = seed_header_change("plan_codes", new, old)
    assert change is not None
    assert change.old_columns == ("id", "value")
    assert change.new_columns == ("id", "status")
    text = change.describe()
    assert "plan_codes" in text and "'value'" in text and "'status'" in text


@pytest.mark.parametrize(
    ("table_columns", "changed"),
    [
        (None, False),  # no table yet: the first dbt seed creates it
        (["id", "value"], False),
        (["ID", "Value"], False),  # DuckDB resolves unquoted names case-insensitively
        (["value", "id"], True),  # reordered: inserts would land in the wrong columns
        (["id"], True),
        (["id", "value", "extra"], True),
    ],
)
def test_seed_header_change_cases(table_columns, changed):
    csv_columns = read_csv_header(C19 / "plan_codes_v1.csv")
    assert (seed_header_change("plan_codes", csv_columns, table_columns) is not None) is changed


def test_csv_header_drops_a_bom_and_honours_the_delimiter(tmp_path):
    path = tmp_path / "seed.csv"
    path.write_bytes("\ufeffid; status \n1;a\n".encode())
    assert read_csv_header(path, ";") == ("id", "status")
    (tmp_path / "empty.csv").write_text("")
    assert read_csv_header(tmp_path / "empty.csv") == ()


def _seed_table_columns(path: str) -> list[str]:
    with duckdb.connect(path, read_only=True) as connection:
        rows = connection.execute(
            "select column_name from information_schema.columns "
            "where table_schema = 'main' and table_name = ? order by ordinal_position",
            [SEED],
        ).fetchall()
    return [row[0] for row in rows]


def test_seed_with_an_older_header_in_the_warehouse_is_rebuilt(tmp_path, monkeypatch):
    root = tmp_path / "mlops_home"
    warehouse = root / "warehouse" / "warehouse.duckdb"
    monkeypatch.setenv("MLOPS_HOME", str(root))
    monkeypatch.setenv("MLOPS_DELTA_ROOT", str(root / "delta"))
    monkeypatch.setenv("MLOPS_DUCKDB_PATH", str(warehouse))
    monkeypatch.setenv("MLOPS_DBT_TARGET_PATH", str(root / "dbt_target"))
    monkeypatch.setenv("DAGSTER_HOME", str(root / "dagster"))
    prepare_environment()

    with dg.instance_for_test(temp_dir=str(root / "dagster")) as instance:

        def materialize_seed() -> dg.ExecuteInProcessResult:
            # Only the seed (and its tests): it needs no raw data.
            return dg.materialize(
                [dbt_models],
                selection=[SEED_KEY],
                resources={"dbt": dbt_resource(), "lake": Lake(root_uri=str(root / "delta"))},
                instance=instance,
            )

        first = materialize_seed()
        assert first.success
        assert _seed_table_columns(str(warehouse)) == SEED_COLUMNS
        first_mat = first.asset_materializations_for_node("dbt_models")
        assert [m.asset_key for m in first_mat] == [SEED_KEY]
        assert SEED_REFRESH_METADATA_KEY not in first_mat[0].metadata

        # The table as an earlier version of the CSV left it.
        with duckdb.connect(str(warehouse)) as connection:
            connection.execute(f"drop table main.{SEED}")
            connection.execute(f"create table main.{SEED} (slot integer, band varchar)")
            connection.execute(f"insert into main.{SEED} values (0, 'night')")
        manifest = json.loads(DBT_PROJECT.manifest_path.read_text())
        changes = seed_header_changes(manifest)
        assert [c.seed for c in changes.values()] == [SEED]

        second = materialize_seed()
        assert second.success
        assert _seed_table_columns(str(warehouse)) == SEED_COLUMNS
        slots = read_mart(SEED)
        assert slots.height == 48
        assert set(slots["tariff_band"]) == {"peak", "shoulder", "off_peak"}

        (mat,) = second.asset_materializations_for_node("dbt_models")
        assert mat.asset_key == SEED_KEY  # the same key, materialized once
        assert mat.metadata[SEED_REFRESH_METADATA_KEY].value == {
            "old_columns": ["slot", "band"],
            "new_columns": SEED_COLUMNS,
        }
        assert mat.metadata["dagster/row_count"].value == 48
        warnings = [
            record.user_message
            for record in instance.all_logs(second.run_id)
            if record.level == 30 and SEED in record.user_message
        ]
        assert len(warnings) == 1
        assert "['slot', 'band']" in warnings[0] and str(SEED_COLUMNS) in warnings[0]
        assert "--full-refresh" in warnings[0]
        assert all(c.passed for c in second.get_asset_check_evaluations())


def test_a_failed_refresh_fails_the_run_naming_seed_columns_and_fix(monkeypatch, tmp_path):
    """When `dbt seed --full-refresh` itself fails, the step fails with the whole story."""
    import logging

    from mlops_assets.defs import transform

    change = seed_header_change(SEED, ["slot", "slot_start", "tariff_band"], ["slot", "band"])
    monkeypatch.setattr(transform, "seed_header_changes", lambda manifest, ids: {"seed.x": change})

    class FailedInvocation:
        def wait(self):
            return self

        def is_successful(self):
            return False

        def get_error(self):
            return RuntimeError("Runtime Error in seed half_hour_slots")

    class StubDbt:
        calls: list = []

        def cli(self, args, **kwargs):
            self.calls.append((args, kwargs))
            return FailedInvocation()

    class StubContext:
        selected_asset_keys = {SEED_KEY}
        log = logging.getLogger("c19")

    dbt = StubDbt()
    with pytest.raises(dg.Failure) as raised:
        transform._refresh_changed_seeds(StubContext(), dbt, tmp_path)
    message = raised.value.description
    assert SEED in message and "['slot', 'band']" in message and str(SEED_COLUMNS) in message
    assert "--full-refresh" in message and "Fix the CSV" in message
    assert dbt.calls[0][0] == ["seed", "--select", SEED, "--full-refresh"]
    assert "context" not in dbt.calls[0][1]  # the refresh emits no asset events of its own
