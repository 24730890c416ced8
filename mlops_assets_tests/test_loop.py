"""The closed loop on real Elec2 months: a month that drifts is scored, monitored and makes the
retrain sensor retrain; the timeline records it. Runs in a home of its own."""

import os
import tempfile

import dagster as dg
import pytest

FIRST = ("1997-01-01", "1997-04-01")  # train on Jan-Mar 1997, score April


@pytest.fixture(scope="module")
def loop_steps():
    mp = pytest.MonkeyPatch()
    mp.setenv("MLOPS_HOME", tempfile.mkdtemp(prefix="mlops_loop_"))
    for var in ("DAGSTER_HOME", "MLOPS_DELTA_ROOT", "MLOPS_DUCKDB_PATH"):
        mp.delenv(var, raising=False)
    mp.setenv("MLOPS_RETRAIN_COOLDOWN_MINUTES", "0")
    try:
        from mlops_assets.definitions import defs
        from mlops_assets.defs.ingestion import RAW_KEY
        from mlops_assets.defs.sensors import landing_dir
        from mlops_assets.replay import Loop, replay
        from mlops_assets.settings import home, prepare_environment
        from mlops_assets.sources import fetch_elec2

        prepare_environment()
        instance = dg.DagsterInstance.get()
        definitions = defs()
        job = definitions.resolve_implicit_global_asset_job_def()
        config = {"ops": {"hyperparameters": {"config": {"n_trials": 3}}}}
        tags = {"dagster/asset_partition_range_start": FIRST[0], "dagster/asset_partition_range_end": FIRST[1]}
        assert job.execute_in_process(instance=instance, asset_selection=[RAW_KEY], tags=tags).success
        rest = [k for k in definitions.resolve_asset_graph().materializable_asset_keys if k != RAW_KEY]
        assert job.execute_in_process(instance=instance, asset_selection=rest, run_config=config).success
        loop = Loop(instance, definitions, run_config=config)
        lines = []
        steps = replay(loop, ["1997-04", "1997-05"], fetch_elec2(home().downloads_dir), landing_dir(), echo=lines.append)
        yield instance, steps, lines, loop
    finally:
        mp.undo()


def test_a_month_without_drift_triggers_no_retrain(loop_steps):
    _, (april, _), lines, _ = loop_steps
    # April 1997 against January-March: NSW moves a little, Victoria is still constant
    assert april.drifted is False and april.drift_share < 0.5
    assert april.retrained is False and april.reason == ""
    assert april.champion_after == april.champion_version == 1
    assert lines[0].startswith("1997-04")


def test_a_drifting_month_triggers_exactly_one_retrain(loop_steps):
    instance, (_, may), lines, _ = loop_steps
    # Victoria's figures start to vary in May 1997 after a year of constants: real drift.
    assert may.drifted is True and may.drift_share >= 0.5
    assert may.retrained is True and "drift_report:no_data_drift" in may.reason
    retrains = instance.get_runs(filters=dg.RunsFilter(tags={"mlops/trigger": "retrain"}))
    assert len(retrains) == 1
    assert may.champion_auc is not None and 0.5 < may.champion_auc < 1
    assert may.static_auc is not None and 0.3 < may.static_auc < 1
    assert lines[1].startswith("1997-05")


def test_the_landing_file_was_ingested_once(loop_steps):
    instance, _, _, loop = loop_steps
    landed = instance.get_runs(filters=dg.RunsFilter(tags={"mlops/trigger": "landing"}))
    assert sorted(r.tags["dagster/partition"] for r in landed) == ["1997-04-01", "1997-05-01"]
    # another look at the same folder launches nothing
    assert loop.tick("landing_files") == []
    assert loop.tick("retrain_on_failed_checks") == []


def test_a_bad_delivery_fails_clearly_and_leaves_every_table_as_it_was(loop_steps, tmp_path):
    """A landed file with an out-of-range value: the blocking schema check fails, the run stops
    before anything downstream, and the raw and quarantine tables keep their versions."""
    instance, _, _, loop = loop_steps
    from mlops_assets.settings import home
    from mlops_assets.tables import table_version

    root = home().delta_root
    before = {name: table_version(f"{root}/{name}") for name in ("raw/elec2", "quarantine/elec2", "features/elec2")}
    bad = tmp_path / "elec2_1997-06_bad.csv"
    rows = ["ts,feat_1,feat_2,feat_3,feat_4,feat_5,feat_6,target"]
    rows += [f"1997-06-01T{h:02d}:00:00Z,0.1,0.2,0.3,0.4,0.5,0.6,1" for h in range(5)]
    rows.append("1997-06-01T05:00:00Z,0.1,7.5,0.3,0.4,0.5,0.6,1")  # nswprice outside [0, 1]
    bad.write_text("\n".join(rows) + "\n")
    result = loop.redeliver(bad, "1997-06")
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    message = failure.step_failure_data.error.message
    assert "nswprice" in message and "line 7" in message and "left unchanged" in message
    check = instance.get_latest_asset_check_evaluation_record(
        dg.AssetCheckKey(dg.AssetKey(["raw", "elec2"]), "raw_schema"))
    assert check.event.asset_check_evaluation.passed is False
    after = {name: table_version(f"{root}/{name}") for name in before}
    assert after == before
    assert not any(e.is_step_success and e.step_key == "features" for e in result.all_events)


def test_timeline_means_split_at_the_first_drift():
    from mlops_assets.replay import Step, timeline_means

    def step(window, drifted, champion, static):
        return Step(window=window, drift_share=0.8 if drifted else 0.2, drifted=drifted,
                    champion_version=1, champion_auc=champion, retrained=drifted, reason="",
                    champion_after=1, static_auc=static)

    lines = timeline_means([step("1996-09", False, 0.70, 0.70), step("1997-05", True, 0.74, 0.60),
                            step("1997-06", False, 0.80, 0.62), step("1997-07", True, None, 0.5)])
    assert "over 3 labelled months: champion in charge 0.747, first model never retrained 0.640" in lines[0]
    assert "(1 month, to 1996-09): champion in charge 0.700, first model never retrained 0.700" in lines[1]
    assert "(2 months, 1997-05 on): champion in charge 0.770, first model never retrained 0.610" in lines[2]
