"""The closed loop's sensors, evaluated against a real Dagster instance (no mocked context).

Check evaluations and freshness changes are reported to the instance as runless events, exactly
as a check run or the freshness daemon would record them.
"""

import json
import time

import dagster as dg
import pytest

from mlops_assets.definitions import defs
from mlops_assets.defs.monitoring import DRIFT_CHECK, PERFORMANCE_CHECK
from mlops_assets.defs.sensors import TRIGGER_TAG

DRIFT = dg.AssetCheckKey(dg.AssetKey("drift_report"), DRIFT_CHECK)
PERF = dg.AssetCheckKey(dg.AssetKey("model_performance"), PERFORMANCE_CHECK)


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


@pytest.fixture(scope="module")
def definitions():
    return defs()


def _check(instance, key: dg.AssetCheckKey, passed: bool):
    instance.report_runless_asset_event(
        dg.AssetCheckEvaluation(asset_key=key.asset_key, check_name=key.name, passed=passed)
    )


def _stale(instance, key="model"):
    from dagster._core.definitions.freshness import FreshnessState, FreshnessStateChange

    instance.report_runless_asset_event(
        FreshnessStateChange(
            key=dg.AssetKey(key), new_state=FreshnessState.FAIL, previous_state=FreshnessState.PASS,
            state_change_timestamp=time.time(),
        )
    )


def _tick(definitions, instance, name, cursor=None):
    sensor = definitions.resolve_sensor_def(name)
    context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=definitions, sensor_name=name)
    return sensor.evaluate_tick(context)


def test_sensors_are_running_by_default(definitions):
    for sensor in definitions.sensors:
        assert sensor.default_status == dg.DefaultSensorStatus.RUNNING, sensor.name


def test_passing_checks_request_nothing(definitions, instance):
    _check(instance, DRIFT, passed=True)
    _check(instance, PERF, passed=True)
    data = _tick(definitions, instance, "retrain_on_failed_checks")
    assert data.run_requests == []
    assert "No failing" in data.skip_message


def test_a_failing_check_gives_one_run_and_a_second_tick_none(definitions, instance, monkeypatch):
    monkeypatch.setenv("MLOPS_RETRAIN_COOLDOWN_MINUTES", "0")
    _check(instance, DRIFT, passed=False)
    first = _tick(definitions, instance, "retrain_on_failed_checks")
    assert len(first.run_requests) == 1
    request = first.run_requests[0]
    assert request.tags[TRIGGER_TAG] == "retrain"
    assert "drift_report:no_data_drift" in request.run_key
    second = _tick(definitions, instance, "retrain_on_failed_checks", cursor=first.cursor)
    assert second.run_requests == []
    # A replayed tick (the cursor before the request) asks for the very same run key, which
    # Dagster's sensor daemon launches only once.
    replay = _tick(definitions, instance, "retrain_on_failed_checks", cursor=None)
    assert [r.run_key for r in replay.run_requests] == [request.run_key]


def test_a_new_failure_after_a_handled_one_triggers_again(definitions, instance, monkeypatch):
    monkeypatch.setenv("MLOPS_RETRAIN_COOLDOWN_MINUTES", "0")
    _check(instance, PERF, passed=False)
    first = _tick(definitions, instance, "retrain_on_failed_checks")
    _check(instance, PERF, passed=False)
    second = _tick(definitions, instance, "retrain_on_failed_checks", cursor=first.cursor)
    assert len(second.run_requests) == 1
    assert second.run_requests[0].run_key != first.run_requests[0].run_key


def test_three_failures_in_one_tick_give_exactly_one_run(definitions, instance, monkeypatch):
    """Case c17: drift, performance and freshness all failing at once."""
    monkeypatch.setenv("MLOPS_RETRAIN_COOLDOWN_MINUTES", "0")
    _check(instance, DRIFT, passed=False)
    _check(instance, PERF, passed=False)
    _stale(instance)
    data = _tick(definitions, instance, "retrain_on_failed_checks")
    assert len(data.run_requests) == 1
    key = data.run_requests[0].run_key
    assert "drift_report:no_data_drift" in key and "model_performance:champion_performance" in key
    assert "model:freshness" in key
    assert _tick(definitions, instance, "retrain_on_failed_checks", cursor=data.cursor).run_requests == []


def test_a_stale_model_gives_one_run(definitions, instance, monkeypatch):
    monkeypatch.setenv("MLOPS_RETRAIN_COOLDOWN_MINUTES", "0")
    _stale(instance)
    data = _tick(definitions, instance, "retrain_on_failed_checks")
    assert len(data.run_requests) == 1
    assert data.run_requests[0].tags["mlops/reason"] == "model:freshness"


def _retrain_run(instance):
    @dg.asset(name="marker")
    def marker():
        return 1

    dg.materialize([marker], instance=instance, tags={TRIGGER_TAG: "retrain"})


def test_cooldown_and_daily_cap_stop_retrain_storms(definitions, instance, monkeypatch):
    _retrain_run(instance)
    _check(instance, DRIFT, passed=False)
    monkeypatch.setenv("MLOPS_RETRAIN_COOLDOWN_MINUTES", "60")
    cooling = _tick(definitions, instance, "retrain_on_failed_checks")
    assert cooling.run_requests == [] and "Cooling down" in cooling.skip_message
    assert cooling.cursor is None  # the failure stays pending until the cooldown ends
    monkeypatch.setenv("MLOPS_RETRAIN_COOLDOWN_MINUTES", "0")
    monkeypatch.setenv("MLOPS_RETRAIN_DAILY_CAP", "1")
    capped = _tick(definitions, instance, "retrain_on_failed_checks")
    assert capped.run_requests == [] and "Daily cap" in capped.skip_message
    monkeypatch.setenv("MLOPS_RETRAIN_DAILY_CAP", "2")
    assert len(_tick(definitions, instance, "retrain_on_failed_checks").run_requests) == 1


def _landing_csv(path, month="1996-09", rows=3):
    lines = ["ts,feat_1,feat_2,feat_3,feat_4,feat_5,feat_6,target"]
    for i in range(rows):
        lines.append(f"{month}-01T0{i}:00:00Z,0.1,0.2,0.3,0.0,0.4,0.5,{i % 2}")
    path.write_text("\n".join(lines) + "\n")


def test_a_new_file_gives_one_ingestion_and_a_second_look_none(definitions, instance, tmp_path, monkeypatch):
    monkeypatch.setenv("MLOPS_LANDING_DIR", str(tmp_path))
    _landing_csv(tmp_path / "sept.csv")
    first = _tick(definitions, instance, "landing_files")
    assert len(first.run_requests) == 1
    request = first.run_requests[0]
    assert request.partition_key == "1996-09-01"
    assert request.run_config["ops"]["raw__elec2"]["config"]["source_path"].endswith("sept.csv")
    assert request.run_key.startswith("landing:") and request.run_key.endswith(":1996-09")
    assert _tick(definitions, instance, "landing_files", cursor=first.cursor).run_requests == []
    # the same content under another name is the same file
    (tmp_path / "copy.csv").write_bytes((tmp_path / "sept.csv").read_bytes())
    assert _tick(definitions, instance, "landing_files", cursor=first.cursor).run_requests == []
    # a file spanning two months asks for one run per window
    _landing_csv(tmp_path / "oct.csv", month="1996-10")
    with open(tmp_path / "oct.csv", "a") as fh:
        fh.write("1996-11-01T00:00:00Z,0.1,0.2,0.3,0.0,0.4,0.5,1\n")
    later = _tick(definitions, instance, "landing_files", cursor=first.cursor)
    assert sorted(r.partition_key for r in later.run_requests) == ["1996-10-01", "1996-11-01"]
    assert len(json.loads(later.cursor)) == 2


def test_an_unreadable_landing_file_is_reported_not_fatal(definitions, instance, tmp_path, monkeypatch):
    monkeypatch.setenv("MLOPS_LANDING_DIR", str(tmp_path))
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    data = _tick(definitions, instance, "landing_files")
    assert data.run_requests == []
