"""The code location loads, and its graph has the groups and assets a user expects."""

import dagster as dg

from mlops_assets.definitions import defs


def test_definitions_load_with_every_group():
    graph = defs().resolve_asset_graph()
    groups = {}
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        if node.is_materializable:
            groups.setdefault(node.group_name, set()).add(key.to_user_string())
    assert groups["ingestion"] == {"raw/elec2"}
    assert {"stg_elec2", "daily_market"} <= groups["transform"]
    assert groups["features"] == {"features"}
    assert groups["training"] == {"training_set", "hyperparameters", "model", "evaluation"}
    assert groups["registry"] == {"champion"}
    assert groups["scoring"] == {"predictions"}
    assert groups["monitoring"] == {"drift_report", "model_performance"}


def test_lineage_runs_from_raw_through_dbt_to_predictions():
    graph = defs().resolve_asset_graph()
    upstream = graph.get(dg.AssetKey("predictions")).parent_keys
    assert dg.AssetKey("features") in upstream and dg.AssetKey("champion") in upstream
    assert dg.AssetKey("daily_market") in graph.get(dg.AssetKey("features")).parent_keys
    assert dg.AssetKey(["raw", "elec2"]) in graph.get(dg.AssetKey("stg_elec2")).parent_keys


def test_raw_schema_is_a_blocking_check():
    graph = defs().resolve_asset_graph()
    spec = graph.get_check_spec(dg.AssetCheckKey(dg.AssetKey(["raw", "elec2"]), "raw_schema"))
    assert spec.blocking


def test_workspace_and_module_load_the_same_definitions():
    import yaml

    from mlops_assets.settings import PROJECT_ROOT

    workspace = yaml.safe_load((PROJECT_ROOT / "workspace.yaml").read_text())
    target = workspace["load_from"][0]["python_module"]
    assert target["module_name"] == "mlops_assets.definitions"
    assert target["location_name"] == "mlops_assets"


def test_every_asset_has_a_description_and_code_version():
    """Python assets carry a digest of their source (mlops_assets.versions); dbt assets a hash of
    their SQL, from dagster-dbt."""
    import re

    graph = defs().resolve_asset_graph()
    dbt = ("stg_elec2", "daily_market", "half_hour_slots")
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        if not node.is_materializable:
            continue
        assert node.code_version, key
        if key.path[0] not in dbt:
            assert node.description, key
            assert re.fullmatch(r"[0-9a-f]{12}", node.code_version), (key, node.code_version)


def test_the_cli_loads_the_definitions_and_instance_once_per_settings(tmp_path, monkeypatch):
    """Each load of the code location scans ``defs/`` again (about a second), so the CLI keeps
    one per process, and a new one when the settings it was built from change."""
    from mlops_assets import cli

    first = cli.defs()
    assert cli.defs() is first and cli.instance() is cli.instance()
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    assert cli.defs() is not first and cli.instance().root_directory == str(tmp_path)
