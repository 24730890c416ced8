"""The dbt layer end to end: a synthetic raw Delta table, one real ``dbt build`` through Dagster,
and the marts, checks and metadata it leaves behind. The build uses no mocks and no network."""

import json
from datetime import datetime, timedelta, timezone

import dagster as dg
import numpy as np
import polars as pl
import pytest
import yaml

from mlops_assets.dbt import DBT_PROJECT, dbt_resource, manifest_is_current, read_mart
from mlops_assets.defs.transform import GROUP_NAME, dbt_models
from mlops_assets.resources import Lake
from mlops_assets.settings import DBT_PROJECT_DIR, prepare_environment
from mlops_assets.tables import read_table

RAW_KEY = dg.AssetKey(["raw", "elec2"])
STG_KEY = dg.AssetKey(["stg_elec2"])
MART_KEY = dg.AssetKey(["daily_market"])
SEED_KEY = dg.AssetKey(["half_hour_slots"])
DAYS = 9  # more than the 7-day window, so the window has to drop its oldest day
START = datetime(1996, 5, 27, tzinfo=timezone.utc)  # crosses into June: two Delta partitions
LOADED_AT = datetime(2024, 1, 1, tzinfo=timezone.utc)


def synthetic_elec2(days: int = DAYS, seed: int = 7) -> pl.DataFrame:
    """Half-hourly rows shaped like the raw Elec2 table, with random scaled readings."""
    n = days * 48
    rng = np.random.default_rng(seed)
    ts = pl.Series("ts", [START + timedelta(minutes=30 * i) for i in range(n)])
    ts = ts.dt.cast_time_unit("us")
    return pl.DataFrame(
        {
            "ts": ts,
            "window": ts.dt.strftime("%Y-%m"),
            "period": [(i % 48) / 47 for i in range(n)],
            "nswprice": rng.random(n),
            "nswdemand": rng.random(n),
            "vicprice": rng.random(n),
            "vicdemand": rng.random(n),
            "transfer": rng.random(n),
            "price_up": pl.Series(rng.integers(0, 2, n), dtype=pl.Int64),
            "source_file": ["elec.csv"] * n,
            "source_sha256": ["0" * 64] * n,
            "source_line": pl.Series(range(2, n + 2), dtype=pl.Int64),
            "loaded_at": pl.Series([LOADED_AT] * n).dt.cast_time_unit("us"),
        }
    )


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    """One dbt build for the whole module, in a throwaway MLOPS_HOME and Dagster instance."""
    root = tmp_path_factory.mktemp("mlops_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLOPS_HOME", str(root))
        mp.setenv("MLOPS_DELTA_ROOT", str(root / "delta"))
        mp.setenv("MLOPS_DUCKDB_PATH", str(root / "warehouse" / "warehouse.duckdb"))
        mp.setenv("MLOPS_DBT_TARGET_PATH", str(root / "dbt_target"))
        mp.setenv("DAGSTER_HOME", str(root / "dagster"))
        prepare_environment()

        raw = synthetic_elec2()
        raw.write_delta(
            str(root / "delta" / "raw" / "elec2"), delta_write_options={"partition_by": ["window"]}
        )
        with dg.instance_for_test(temp_dir=str(root / "dagster")) as instance:
            result = dg.materialize(
                [dbt_models], resources={"dbt": dbt_resource(), "lake": Lake(root_uri=str(root / "delta"))}, instance=instance
            )
            yield {"root": root, "raw": raw, "result": result}


def test_assets_are_in_the_transform_group_downstream_of_raw():
    specs = {spec.key: spec for spec in dbt_models.specs}
    assert set(specs) == {STG_KEY, MART_KEY, SEED_KEY}
    assert {spec.group_name for spec in specs.values()} == {GROUP_NAME}
    assert {"dbt", "duckdb", "sql", "view"} <= specs[STG_KEY].kinds
    assert "table" in specs[MART_KEY].kinds
    # The dbt source raw.elec2 is the ingestion asset's key, so lineage joins up by itself.
    assert {dep.asset_key for dep in specs[STG_KEY].deps} == {RAW_KEY}
    assert {dep.asset_key for dep in specs[MART_KEY].deps} == {STG_KEY}
    assert specs[SEED_KEY].deps == []


def test_manifest_is_written_and_current():
    assert DBT_PROJECT.manifest_path.exists()
    assert manifest_is_current()


def test_build_materializes_both_models_and_the_seed(build):
    result = build["result"]
    assert result.success
    materialized = {event.asset_key for event in result.get_asset_materialization_events()}
    assert materialized == {STG_KEY, MART_KEY, SEED_KEY}
    # The dbt subprocess saw the monkeypatched environment: the warehouse is in the temp home.
    assert (build["root"] / "warehouse" / "warehouse.duckdb").exists()


def test_dbt_tests_pass_as_asset_checks(build):
    evaluations = build["result"].get_asset_check_evaluations()
    manifest = json.loads(DBT_PROJECT.manifest_path.read_text())
    data_tests = [n for n in manifest["nodes"].values() if n["resource_type"] == "test"]
    assert len(evaluations) == len(data_tests) > 0
    failed = [e.check_name for e in evaluations if not e.passed]
    assert failed == []
    names = {(e.asset_key, e.check_name) for e in evaluations}
    assert (STG_KEY, "accepted_values_stg_elec2_price_up__False__0__1") in names
    assert (MART_KEY, "unique_daily_market_observed_on") in names


def test_unit_test_ran_and_passed(build):
    run_id = build["result"].run_id
    run_results = build["root"] / "dbt" / "runs" / f"dbt_models-{run_id}" / "run_results.json"
    results = json.loads(run_results.read_text())["results"]
    unit = [r for r in results if r["unique_id"].startswith("unit_test.")]
    assert [r["status"] for r in unit] == ["pass"]


def test_staging_keeps_the_grain(build):
    stg = read_mart("stg_elec2")
    raw = build["raw"]
    assert stg.height == raw.height
    assert stg["observed_at"].n_unique() == raw.height
    assert stg["observed_on"].n_unique() == DAYS
    assert sorted(stg["window_month"].unique()) == ["1996-05", "1996-06"]


def test_daily_market_values(build):
    raw = build["raw"].with_columns(day=pl.col("ts").dt.date())
    expected = (
        raw.group_by("day")
        .agg(
            n=pl.len(),
            avg=pl.col("nswprice").mean(),
            lo=pl.col("nswprice").min(),
            hi=pl.col("nswprice").max(),
            demand=pl.col("nswdemand").mean(),
            vic=pl.col("vicprice").mean(),
            transfer=pl.col("transfer").mean(),
            up=pl.col("price_up").mean(),
        )
        .sort("day")
        .with_columns(
            rolling=pl.col("avg").rolling_mean(window_size=7, min_samples=1),
            change=pl.col("avg").diff(),
        )
    )
    mart = read_mart("daily_market").sort("observed_on")

    assert mart.columns[0] == "observed_on"
    assert mart.height == DAYS
    assert mart["observed_on"].to_list() == expected["day"].to_list()
    assert mart["count_half_hours"].to_list() == [48] * DAYS
    first_day = raw.filter(pl.col("day") == START.date())
    assert mart["avg_nsw_price"][0] == pytest.approx(first_day["nswprice"].mean(), rel=1e-12)
    for column, reference in [
        ("avg_nsw_price", "avg"),
        ("min_nsw_price", "lo"),
        ("max_nsw_price", "hi"),
        ("avg_nsw_demand", "demand"),
        ("avg_vic_price", "vic"),
        ("avg_transfer", "transfer"),
        ("share_price_up", "up"),
        ("avg_nsw_price_rolling_7d", "rolling"),
    ]:
        np.testing.assert_allclose(
            mart[column].to_numpy(), expected[reference].to_numpy(), rtol=1e-12, err_msg=column
        )
    assert mart["avg_nsw_price_change_1d"][0] is None
    np.testing.assert_allclose(
        mart["avg_nsw_price_change_1d"][1:].to_numpy(), expected["change"][1:].to_numpy(), rtol=1e-9
    )
    # Day 9's window holds days 3..9 only.
    assert mart["avg_nsw_price_rolling_7d"][8] == pytest.approx(expected["avg"][2:9].mean())


def test_materializations_carry_row_counts(build):
    counts = {
        event.asset_key: event.materialization.metadata.get("dagster/row_count")
        for event in build["result"].get_asset_materialization_events()
    }
    assert counts[STG_KEY].value == DAYS * 48
    assert counts[MART_KEY].value == DAYS
    assert counts[SEED_KEY].value == 48


def test_read_mart_refuses_bad_names_and_missing_tables(build):
    with pytest.raises(ValueError):
        read_mart("daily_market; drop table daily_market")
    with pytest.raises(LookupError, match="no_such_mart"):
        read_mart("no_such_mart")


def test_resource_never_asks_pypi_for_dbt_version(monkeypatch):
    """dagster-dbt's stock resource runs `dbt --version`, which queries pypi.org."""
    import dagster_dbt.core.resource

    def no_subprocess(*args, **kwargs):
        raise AssertionError(f"unexpected subprocess {args}")

    monkeypatch.setattr(dagster_dbt.core.resource, "check_output", no_subprocess)
    assert dbt_resource()._cli_version.major == 1


def test_profile_never_downloads_extensions():
    profile = yaml.safe_load((DBT_PROJECT_DIR / "profiles.yml").read_text())
    output = profile["mlops_assets"]["outputs"][profile["mlops_assets"]["target"]]
    assert output["settings"]["autoinstall_known_extensions"] is False
    assert output["settings"]["autoload_known_extensions"] is False
    assert output["settings"]["TimeZone"] == "UTC"
    assert {"module": "delta"} in output["plugins"]
    for sql in DBT_PROJECT_DIR.rglob("*.sql"):
        text = sql.read_text().lower()
        assert "install " not in text and "delta_scan" not in text, sql
    project = yaml.safe_load((DBT_PROJECT_DIR / "dbt_project.yml").read_text())
    assert project["flags"]["send_anonymous_usage_stats"] is False


def test_the_daily_mart_is_copied_to_delta_for_the_python_assets(build):
    """features reads a versioned Delta copy of the mart, not the warehouse file."""
    copy = read_table(str(build["root"] / "delta" / "marts" / "daily_market"))
    mart = read_mart("daily_market")
    assert copy.sort("observed_on").equals(mart.sort("observed_on"))
    event = next(e for e in build["result"].get_asset_materialization_events()
                 if e.asset_key == dg.AssetKey("daily_market"))
    assert event.materialization.metadata["delta_version"].value == 0
