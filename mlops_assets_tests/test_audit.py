"""Audit and reproducibility on the real pipeline, in a home of its own.

Round 1 ingests May-Aug 1996, trains v1 on May-Jul and scores August with it. Round 2 ingests
September, trains v2 on Jun-Aug, promotes it (gate margin -1) and scores September. So the
August predictions were made by a champion that no longer is one, and by the time v1 is
reproduced every table it was trained on has moved on. The retention tests come last: the forced
vacuum removes what reproducing v1 needs.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from mlops_assets.sources import ELEC2_SHA256

MODEL = "elec2_lightgbm"
CONFIG = {"ops": {"hyperparameters": {"config": {"n_trials": 2}},
                  "evaluation_promotion_gate": {"config": {"margin": -1.0}}}}


@dataclass
class Home:
    root: str
    runs: dict
    """Dagster run ids: ingest_1, main_1, ingest_2, main_2, features_3, features_4."""


def _range(start: str, end: str) -> dict:
    return {"dagster/asset_partition_range_start": start, "dagster/asset_partition_range_end": end}


@pytest.fixture(scope="module")
def home():
    mp = pytest.MonkeyPatch()
    root = tempfile.mkdtemp(prefix="mlops_audit_")
    mp.setenv("MLOPS_HOME", root)
    for var in ("DAGSTER_HOME", "MLOPS_DELTA_ROOT", "MLOPS_DUCKDB_PATH"):
        mp.delenv(var, raising=False)
    try:
        from mlops_assets.definitions import defs
        from mlops_assets.defs.ingestion import RAW_KEY
        from mlops_assets.settings import prepare_environment

        prepare_environment()
        instance = dg.DagsterInstance.get()
        definitions = defs()
        job = definitions.resolve_implicit_global_asset_job_def()
        rest = [k for k in definitions.resolve_asset_graph().materializable_asset_keys
                if k != RAW_KEY]

        def run(selection, tags=None, config=None):
            result = job.execute_in_process(instance=instance, asset_selection=selection,
                                            tags=tags or {}, run_config=config)
            assert result.success
            return result.run_id

        runs = {
            "ingest_1": run([RAW_KEY], _range("1996-05-01", "1996-08-01")),
            "main_1": run(rest, config=CONFIG),
            "ingest_2": run([RAW_KEY], _range("1996-09-01", "1996-09-01")),
            "main_2": run(rest, config=CONFIG),
        }
        yield Home(root, runs)
    finally:
        mp.undo()
        shutil.rmtree(root, ignore_errors=True)


def _delta(*parts) -> str:
    from mlops_assets.settings import home as current_home

    return "/".join([current_home().delta_root, *parts])


def _prediction_id(window: str) -> str:
    preds = pl.read_delta(_delta("predictions", "elec2"))
    return preds.filter(pl.col("window") == window).sort("ts")["prediction_id"][10]


def _client():
    from mlflow import MlflowClient

    from mlops_assets.settings import home as current_home

    uri = current_home().mlflow_tracking_uri
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _tags(version: int) -> dict:
    client = _client()
    return client.get_run(client.get_model_version(MODEL, str(version)).run_id).data.tags


# --------------------------------------------------------------------------------------------
# Trace


def test_trace_of_a_prediction_made_by_an_older_champion(home):
    from mlops_assets.audit import trace
    from mlops_assets.settings import PROJECT_ROOT

    t = trace(_prediction_id("1996-08"))
    p, m, ts = t["prediction"], t["model"], t["training_set"]
    assert p["window"] == "1996-08" and 0 <= p["score"] <= 1
    assert p["dagster_run_id"] == home.runs["main_1"]
    # made by v1 while it held the champion alias; v2 has taken it since
    assert (m["version"], m["alias_at_scoring"], m["champion_at_scoring"]) == (1, "champion", 1)
    assert m["champion_now"] == 2
    assert m["champion"]["replaced_by_version"] == 2 and m["champion"]["until"] > p["scored_at"]
    assert m["champion"]["promoted_in_dagster_run"] == home.runs["main_1"]
    assert m["training_dagster_run_id"] == home.runs["main_1"]
    assert m["mlflow_run_id"] == _client().get_model_version(MODEL, "1").run_id
    # v1's own training set, not the one the tables hold now
    tags = _tags(1)
    assert ts["version"] == int(tags["training_set_delta_version"]) == 0
    assert ts["content_sha256"] == ts["content_sha256_in_commit"] == tags["training_set_sha256"]
    assert ts["train_windows"] == ["1996-05", "1996-06", "1996-07"]
    assert ts["scoring_window"] == "1996-08"
    assert ts["features_version"] == 0 and ts["raw_version"] == 0
    assert ts["dagster_run_id"] == home.runs["main_1"]
    # the feature table version scored, the raw version it was built from, the source row
    assert t["features"]["scoring"]["version"] == 0
    assert t["features"]["scoring"]["raw_version"] == 0
    assert t["features"]["scoring"]["dagster_run_id"] == home.runs["main_1"]
    raw = t["raw"]["scoring"]
    assert raw["version"] == 0 and raw["dagster_run_id"] == home.runs["ingest_1"]
    assert raw["row"]["source_sha256"] == ELEC2_SHA256
    scored = pl.read_delta(_delta("predictions", "elec2")).filter(
        pl.col("prediction_id") == p["prediction_id"])
    raw_row = pl.read_delta(_delta("raw", "elec2"), version=0).join(scored.select("ts"), on="ts")
    assert raw["row"]["source_line"] == raw_row["source_line"].item()
    assert raw["source_files"] == [{"source_file": "elec2.csv", "source_sha256": ELEC2_SHA256,
                                    "rows": 1200 + 1440 + 1488 + 1488}]
    assert t["raw"]["training"]["source_files"][0]["rows"] == 1200 + 1440 + 1488
    # the code that ran each step
    commit = None
    if (PROJECT_ROOT / ".git").exists():
        commit = subprocess.run(["git", "-C", str(PROJECT_ROOT), "rev-parse", "HEAD"],
                                capture_output=True, text=True).stdout.strip() or None
    for code in (p["code"], t["features"]["scoring"]["code"], raw["code"]):
        assert code["mlops_assets_version"] == "0.1.0"
        assert code.get("git_commit") == commit
        assert code["dbt_manifest_sha256"]
    assert m["code"]["dagster_code_version"]


def test_trace_of_the_new_champions_prediction(home):
    from mlops_assets.audit import trace

    t = trace(_prediction_id("1996-09"))
    assert (t["model"]["version"], t["model"]["alias_at_scoring"]) == (2, "champion")
    assert t["model"]["champion"]["until"] is None
    assert t["training_set"]["version"] == 1
    assert t["training_set"]["train_windows"] == ["1996-06", "1996-07", "1996-08"]
    assert t["features"]["scoring"]["version"] == 1
    assert t["features"]["scoring"]["raw_version"] == 1
    assert t["raw"]["scoring"]["dagster_run_id"] == home.runs["ingest_2"]
    assert t["prediction"]["dagster_run_id"] == home.runs["main_2"]


def test_trace_command_prints_text_and_json(home, capsys):
    from mlops_assets.audit import trace
    from mlops_assets.cli import main

    pid = _prediction_id("1996-08")
    assert main(["trace", pid, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["model"]["version"] == 1
    assert printed == json.loads(json.dumps(trace(pid), default=str))
    assert main(["trace", pid]) == 0
    text = capsys.readouterr().out
    assert f"Prediction {pid}" in text
    assert "Model elec2_lightgbm v1" in text and "alias when scored: champion" in text
    assert "replaced by v2" in text and "Training set training_set/elec2 v0" in text
    with pytest.raises(SystemExit, match="No prediction with id 'nope'"):
        main(["trace", "nope"])


def test_trace_reads_delta_only(home):
    """The trace path starts without MLflow, LightGBM, Dagster or Evidently: what it needs about
    the model is in registry/model_lineage, which scoring fills."""
    pid = _prediction_id("1996-08")
    code = (
        "import sys, json, io, contextlib\n"
        "from mlops_assets.cli import main\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        f"    main(['trace', '{pid}', '--json'])\n"
        "heavy = [m for m in ('mlflow', 'lightgbm', 'dagster', 'evidently', 'sklearn', 'optuna')\n"
        "         if m in sys.modules]\n"
        "print(json.dumps({'heavy': heavy, 'trace': json.loads(out.getvalue())}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parent.parent, env=dict(os.environ),
                          timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["heavy"] == []
    assert result["trace"]["model"]["lineage_source"] == "registry/model_lineage"
    assert result["trace"]["model"]["version"] == 1


# --------------------------------------------------------------------------------------------
# Promotions and models by table version


def test_promotion_history_is_queryable(home, capsys):
    from mlops_assets.audit import promotions
    from mlops_assets.cli import main

    history = promotions(MODEL)
    assert history["challenger_version"].to_list() == [1, 2]
    assert history["champion_version_after"].to_list() == [1, 2]
    assert history["dagster_run_id"].to_list() == [home.runs["main_1"], home.runs["main_2"]]
    assert main(["promotions", "--json", "--model-version", "1"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["challenger_version"] for r in rows] == [1, 2]  # v1 promoted, then replaced
    assert main(["promotions"]) == 0
    assert "no champion yet" in capsys.readouterr().out


def test_models_trained_on_a_features_version(home, capsys):
    from mlops_assets.audit import models_trained_on
    from mlops_assets.cli import main

    assert [m["model_version"] for m in models_trained_on(features_version=0)] == [1]
    assert [m["model_version"] for m in models_trained_on(features_version=1)] == [2]
    assert models_trained_on(features_version=7) == []
    assert [m["model_version"] for m in models_trained_on(raw_version=1)] == [2]
    assert main(["models", "--features-version", "0", "--json"]) == 0
    (v1,) = json.loads(capsys.readouterr().out)
    assert v1["model_version"] == 1 and v1["training_set_sha256"] == _tags(1)["training_set_sha256"]
    assert main(["models"]) == 0
    assert "challenger,champion" in capsys.readouterr().out  # v2 holds both aliases now


# --------------------------------------------------------------------------------------------
# Reproduce


def test_reproduce_a_model_after_the_tables_moved_on(home):
    from mlops_assets.audit import reproduce
    from mlops_assets.tables import table_version

    tags = _tags(1)
    assert table_version(_delta("features", "elec2")) > int(tags["features_delta_version"])
    assert table_version(_delta("training_set", "elec2")) > int(tags["training_set_delta_version"])
    r = reproduce(1)
    assert r["features"]["version"] == 0
    ts = r["training_set"]
    assert ts["verified"] and ts["rebuilt_sha256"] == tags["training_set_sha256"]
    assert ts["commit_sha256"] == tags["training_set_sha256"]
    assert ts["train_windows"] == ["1996-05", "1996-06", "1996-07"]
    assert r["booster"]["identical"]
    assert r["booster"]["best_iteration"] == r["booster"]["recorded_best_iteration"]


def test_reproduce_refuses_a_training_set_that_differs_from_the_recorded_hash(home):
    from mlops_assets.audit import AuditError, reproduce

    client = _client()
    run_id = client.get_model_version(MODEL, "2").run_id
    good = _tags(2)["training_set_sha256"]
    client.set_tag(run_id, "training_set_sha256", "0" * 64)
    try:
        with pytest.raises(AuditError, match="does not match the one elec2_lightgbm v2 was"):
            reproduce(2, retrain=False)
    finally:
        client.set_tag(run_id, "training_set_sha256", good)
    assert reproduce(2, retrain=False)["training_set"]["verified"]


def test_reproduce_command(home, capsys):
    from mlops_assets.cli import main

    assert main(["reproduce", "2", "--no-retrain", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["training_set"]["verified"] and out["features"]["version"] == 1
    with pytest.raises(SystemExit, match="has no registered version 9"):
        main(["reproduce", "9"])


def test_model_card_links_to_the_trace_of_its_training_data(home, capsys):
    import mlflow

    from mlops_assets.cli import main
    from mlops_assets.settings import home as current_home

    card = (current_home().reports_dir / "model_cards" / f"{MODEL}_v1.md").read_text()
    run_id = _client().get_model_version(MODEL, "1").run_id
    assert mlflow.artifacts.load_text(f"runs:/{run_id}/model_card.md") == card
    assert "## Trace and reproduce" in card
    for command in ("mlops-assets trace --model-version 1", "mlops-assets models --version 1",
                    "mlops-assets models --training-set-version 0",
                    "mlops-assets models --features-version 0", "mlops-assets reproduce 1",
                    "mlops-assets promotions --model-version 1"):
        assert command in card, command
    assert f"(http://127.0.0.1:3000/runs/{home.runs['main_1']})" in card
    assert "(http://127.0.0.1:3000/assets/training_set)" in card

    # the command the card gives answers: v1's training data, back to the source file
    line = next(x for x in card.splitlines() if "mlops-assets trace --model-version" in x)
    assert main([*line.split()[1:], "--json"]) == 0
    t = json.loads(capsys.readouterr().out)
    assert t["model"]["version"] == 1 and t["model"]["mlflow_run_id"] == run_id
    ts = t["training_set"]
    assert ts["version"] == 0 and ts["content_sha256"] == _tags(1)["training_set_sha256"]
    assert ts["train_windows"] == ["1996-05", "1996-06", "1996-07"]
    assert ts["dagster_run_id"] == home.runs["main_1"]
    assert (t["features"]["version"], t["features"]["raw_version"]) == (0, 0)
    assert t["raw"]["version"] == 0 and t["raw"]["dagster_run_id"] == home.runs["ingest_1"]
    assert t["raw"]["source_files"] == [{"source_file": "elec2.csv", "source_sha256": ELEC2_SHA256,
                                         "rows": 1200 + 1440 + 1488}]
    assert main(["trace", "--model-version", "2"]) == 0
    text = capsys.readouterr().out
    assert "Training set training_set/elec2 v1" in text and "windows 1996-06,1996-07,1996-08" in text
    assert main(["models", "--version", "1", "--json"]) == 0
    assert [m["model_version"] for m in json.loads(capsys.readouterr().out)] == [1]
    with pytest.raises(SystemExit, match="give a prediction id, or --model-version"):
        main(["trace"])
    with pytest.raises(SystemExit, match="has no registered version 9"):
        main(["trace", "--model-version", "9"])


# --------------------------------------------------------------------------------------------
# Code versions, data versions and what the UI marks stale


def test_materializations_record_data_versions_and_new_data_marks_downstream_stale(home):
    """Every asset's materialization carries its code version and a data version; Delta assets
    name the table version they wrote, so a new training set version makes the assets that read
    it stale in Dagster's eyes (the UI's "stale" mark), and nothing else; an edited asset is
    stale for its code version."""
    from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView, TemporalContext
    from dagster._core.definitions.assets.graph.asset_graph import AssetGraph
    from dagster._core.definitions.data_version import (
        CODE_VERSION_TAG, DATA_VERSION_IS_USER_PROVIDED_TAG, DATA_VERSION_TAG,
        CachingStaleStatusResolver, StaleCauseCategory, StaleStatus, get_input_data_version_tag,
    )
    from dagster._time import get_current_datetime

    from mlops_assets.definitions import defs
    from mlops_assets.defs.ingestion import RAW_KEY
    from mlops_assets.tables import table_version

    instance = dg.DagsterInstance.get()
    definitions = defs()
    graph = definitions.resolve_asset_graph()
    key = dg.AssetKey

    def resolver(asset_graph=graph):
        view = AssetGraphView(temporal_context=TemporalContext(
            effective_dt=get_current_datetime(), last_event_id=None),
            instance=instance, asset_graph=asset_graph)
        return CachingStaleStatusResolver(instance=instance, asset_graph=asset_graph,
                                          loading_context=view)

    def tags(asset, partition=None):
        record = instance.get_latest_data_version_record(asset, partition_key=partition)
        return record.asset_materialization.tags

    for asset in graph.materializable_asset_keys:
        got = tags(asset, "1996-09-01" if graph.get(asset).is_partitioned else None)
        assert got[CODE_VERSION_TAG] == graph.get(asset).code_version, asset
        assert got[DATA_VERSION_TAG], asset
    ours = [a for a in graph.materializable_asset_keys
            if a.path[0] not in ("stg_elec2", "daily_market", "half_hour_slots")]
    for asset in ours:
        got = tags(asset, "1996-09-01" if graph.get(asset).is_partitioned else None)
        assert got.get(DATA_VERSION_IS_USER_PROVIDED_TAG) == "true", asset
    preds = tags(key("predictions"))[DATA_VERSION_TAG]
    assert preds.startswith(f"delta:v{table_version(_delta('predictions', 'elec2'))}@")
    assert tags(RAW_KEY, "1996-09-01")[DATA_VERSION_TAG].startswith("delta:v1@")
    assert tags(RAW_KEY, "1996-08-01")[DATA_VERSION_TAG].startswith("delta:v0@")
    assert tags(key("model"))[DATA_VERSION_TAG] == f"{MODEL}:v2"
    assert tags(key("champion"))[DATA_VERSION_TAG] == f"{MODEL}:v2"
    # what each materialization was built from
    ts_version = tags(key("training_set"))[DATA_VERSION_TAG]
    assert ts_version == f"delta:v1@{_commit_ms('training_set', 1)}"
    assert tags(key("hyperparameters"))[get_input_data_version_tag(key("training_set"))] == ts_version

    before = resolver()
    stale = {a.to_user_string(): before.get_stale_root_causes(a)
             for a in graph.materializable_asset_keys if before.get_status(a) != StaleStatus.FRESH}
    assert stale == {}

    job = definitions.resolve_implicit_global_asset_job_def()
    assert job.execute_in_process(instance=instance, asset_selection=[key("training_set")]).success
    after = resolver()
    # Dagster marks the assets that read training_set; theirs follow when they are rebuilt with
    # a new data version (the model trains on the version its hyperparameters were tuned on)
    stale = {a.to_user_string() for a in graph.materializable_asset_keys
             if after.get_status(a) == StaleStatus.STALE}
    assert stale == {"hyperparameters", "drift_report"}
    for asset in stale:
        (cause,) = after.get_stale_causes(key(asset))
        assert cause.category == StaleCauseCategory.DATA
        assert cause.dependency.asset_key == key("training_set")
        assert "new dependency data version" in cause.reason

    # an edited asset: its code version no longer matches the one its data was made with
    def edited(assets_def):
        if key("features") not in assets_def.keys:
            return assets_def
        return assets_def.map_asset_specs(
            lambda spec: spec.replace_attributes(code_version="edited")
            if spec.key == key("features") else spec)

    changed = AssetGraph.from_assets([edited(a) for a in graph.assets_defs])
    causes = resolver(changed).get_stale_causes(key("features"))
    assert [c.category for c in causes] == [StaleCauseCategory.CODE]


def _commit_ms(table: str, version: int) -> int:
    from mlops_assets.audit import commit_info

    return commit_info(_delta(table, "elec2"), version)["timestamp"]


# --------------------------------------------------------------------------------------------
# Retention (last: the forced vacuum removes what reproducing v1 needs)


def test_retention_settings_are_explicit_configuration():
    from mlops_assets.retention import RetentionPolicy

    assert RetentionPolicy.from_env({}) == RetentionPolicy(168, 30)
    policy = RetentionPolicy.from_env({"MLOPS_DELTA_VACUUM_RETENTION_HOURS": "0",
                                       "MLOPS_DELTA_LOG_RETENTION_DAYS": "3650"})
    assert policy == RetentionPolicy(0, 3650)
    assert policy.table_properties()["delta.logRetentionDuration"] == "interval 3650 days"
    with pytest.raises(ValueError, match="MLOPS_DELTA_LOG_RETENTION_DAYS"):
        RetentionPolicy.from_env({"MLOPS_DELTA_LOG_RETENTION_DAYS": "a month"})


def test_vacuum_keeps_the_versions_registered_models_need(home, monkeypatch, capsys):
    from mlops_assets.audit import missing_files, reproduce
    from mlops_assets.cli import main
    from mlops_assets.definitions import defs
    from mlops_assets.tables import open_table

    # two more feature versions that no model was trained on: the files of the first of them
    # are out of the table's current version after the second
    job = defs().resolve_implicit_global_asset_job_def()
    for _ in range(2):
        assert job.execute_in_process(instance=dg.DagsterInstance.get(),
                                      asset_selection=[dg.AssetKey("features")]).success
    uri = _delta("features", "elec2")
    assert open_table(uri).version() == 3
    unneeded = {Path(u).name for u in open_table(uri, version=2).file_uris()}
    monkeypatch.setenv("MLOPS_DELTA_VACUUM_RETENTION_HOURS", "0")
    assert main(["vacuum", "--json"]) == 0
    reports = {r["table"]: r for r in json.loads(capsys.readouterr().out)}
    feats = reports["features/elec2"]
    assert {Path(f).name for f in feats["removed"]} == unneeded
    assert len(feats["protected"]) == 2  # the files of v0 and v1
    assert feats["needed"] == {"0": [f"{MODEL} v1"], "1": [f"{MODEL} v2"]}
    assert feats["lost"] == []
    assert reports["training_set/elec2"]["protected"]
    for version in (0, 1):
        assert missing_files(open_table(uri, version=version)) == []
    config = open_table(uri).metadata().configuration
    assert config["delta.deletedFileRetentionDuration"] == "interval 0 hours"
    assert config["delta.logRetentionDuration"] == "interval 30 days"
    assert config["delta.enableExpiredLogCleanup"] == "false"
    assert reproduce(1, retrain=False)["training_set"]["verified"]


def test_forced_vacuum_then_reproduce_names_the_version_that_is_gone(home, monkeypatch, capsys):
    from mlops_assets.audit import VersionGone, reproduce
    from mlops_assets.cli import main

    monkeypatch.setenv("MLOPS_DELTA_VACUUM_RETENTION_HOURS", "0")
    assert main(["vacuum", "--force"]) == 0
    out = capsys.readouterr().out
    assert "versions no longer readable: v0 for elec2_lightgbm v1" in out
    with pytest.raises(VersionGone, match=r"features/elec2 version 0 is gone: .*by a vacuum"):
        reproduce(1, retrain=False)
    with pytest.raises(SystemExit, match="Cannot reproduce version 1: features/elec2 version 0"):
        main(["reproduce", "1"])
    # the trace still answers from the log, and says what it could not read
    from mlops_assets.audit import trace

    t = trace(_prediction_id("1996-09"))
    assert t["model"]["version"] == 2
