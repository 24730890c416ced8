"""The promotion gate, the champion alias, the promotions table, evaluation metadata and model
cards, told as one story on a synthetic training set (real MLflow, Delta and Dagster):

A. first model: promoted (no champion yet)
B. identical retrain: the champion stays (gate fails with WARN; the run succeeds)
C. the same challenger with a margin of -1: it is better by the margin, so it takes over
D. a retrain whose artifact is corrupted after registration: the gate fails with ERROR and
   blocks ``champion``; the alias does not move
E. a retrain that passes the gate, but another promotion moves the alias before ``champion``
   runs: the champion that won the race stays
"""

import json
from pathlib import Path
from urllib.parse import urlparse

import dagster as dg
import pytest
from model_lab import SPEC, Lab, keep_mlflow_environment

from mlops_assets.definitions import defs
from mlops_assets.defs.features import no_single_feature_leak
from mlops_assets.registry import decide
from mlops_assets.tables import open_table, read_table


@pytest.fixture(autouse=True, scope="module")
def _mlflow_environment():
    yield from keep_mlflow_environment()


NAME = f"{SPEC.name}_lightgbm"
GATE = dg.AssetCheckKey(dg.AssetKey("evaluation"), "promotion_gate")


def _gate(result: dg.ExecuteInProcessResult) -> dg.AssetCheckEvaluation:
    (evaluation,) = [e for e in result.get_asset_check_evaluations() if e.asset_check_key == GATE]
    return evaluation


def _model_file(client, version: int) -> Path:
    source = client.get_model_version(NAME, str(version)).source  # models:/m-<id>
    location = client.get_logged_model(source.rsplit("/", 1)[-1]).artifact_location
    return Path(urlparse(location).path) / "model.lgb"


@pytest.fixture(scope="module")
def story(tmp_path_factory):
    root = tmp_path_factory.mktemp("registry")
    steps = {}
    with dg.instance_for_test() as instance:
        lab = Lab(root, instance)
        client = lab.client()
        lab.write_features()

        def step(name, result):
            steps[name] = {
                "result": result,
                "champion_alias": int(client.get_model_version_by_alias(NAME, "champion").version),
                "champion_meta": lab.meta("champion"),
            }

        lab.materialize(dg.AssetSelection.checks(no_single_feature_leak))
        step("A", lab.materialize(["training_set", "hyperparameters", "model", "evaluation", "champion"]))
        step("B", lab.materialize(["model", "evaluation", "champion"]))
        step("C", lab.materialize(["evaluation", "champion"], gate={"margin": -1.0}))

        lab.materialize(["model"])  # v3
        _model_file(client, 3).write_text("this is not a LightGBM model\n")
        step("D", lab.materialize(["evaluation", "champion"], raise_on_error=False))

        lab.materialize(["model"])  # v4
        gated = lab.materialize(["evaluation"], gate={"margin": -1.0})
        client.set_registered_model_alias(NAME, "champion", "1")  # another promotion wins the race
        step("E", lab.materialize(["champion"]))
        steps["E"]["gate"] = _gate(gated)
        yield lab, steps


def test_the_promotion_gate_is_a_blocking_check_on_evaluation():
    spec = defs().resolve_asset_graph().get_check_spec(GATE)
    assert spec.blocking
    champion = defs().resolve_asset_graph().get(dg.AssetKey("champion"))
    assert dg.AssetKey("evaluation") in champion.parent_keys


def test_the_first_model_is_promoted_and_an_identical_retrain_keeps_the_champion(story):
    _, steps = story
    a, b = steps["A"], steps["B"]
    assert _gate(a["result"]).passed
    assert a["champion_alias"] == 1 and a["champion_meta"]["decision"] == "promoted"
    assert a["champion_meta"]["reason"] == "no champion yet"
    gate = _gate(b["result"])
    assert not gate.passed and gate.severity == dg.AssetCheckSeverity.WARN
    assert b["result"].success  # keeping the champion is a normal outcome
    assert b["champion_alias"] == 1
    assert b["champion_meta"]["decision"] == "kept champion"
    assert "improvement +0.0000 <= margin 0" in b["champion_meta"]["reason"]


def test_a_challenger_better_by_the_configured_margin_takes_over(story):
    _, steps = story
    c = steps["C"]
    assert _gate(c["result"]).passed
    assert c["champion_alias"] == 2
    assert c["champion_meta"]["decision"] == "promoted"
    assert "> margin -1" in c["champion_meta"]["reason"]


def test_a_corrupt_artifact_is_rejected_by_the_gate_and_the_champion_stays(story):
    lab, steps = story
    d = steps["D"]
    assert not d["result"].success
    gate = _gate(d["result"])
    assert not gate.passed and gate.severity == dg.AssetCheckSeverity.ERROR
    reason = gate.metadata["reason"].value
    assert "v3" in reason and "smoke test" in reason and "loading the model" in reason
    assert d["champion_alias"] == 2
    records = lab.instance.fetch_materializations(dg.AssetKey("champion"), limit=10).records
    champion_runs = {r.run_id for r in records}
    assert d["result"].run_id not in champion_runs  # blocked: it never ran


def test_a_promotion_that_lost_a_race_keeps_the_champion_that_won(story):
    _, steps = story
    e = steps["E"]
    assert e["gate"].passed  # v4 beat v2 by the margin...
    assert e["champion_alias"] == 1  # ...but v1 was promoted meanwhile, and stays
    assert e["champion_meta"]["decision"] == "kept champion"
    assert "moved from v2 to v1" in e["champion_meta"]["reason"]


def test_every_decision_is_appended_to_the_promotions_table(story):
    lab, steps = story
    uri = lab.uri("registry", "promotions")
    rows = read_table(uri).sort("decided_at")
    assert rows["decision"].to_list() == [
        "promoted", "kept champion", "promoted", "rejected", "kept champion"
    ]
    assert rows["challenger_version"].to_list() == [1, 2, 2, 3, 4]
    assert rows["champion_version_before"].to_list() == [None, 1, 1, 2, 2]
    assert rows["champion_version_after"].to_list() == [1, 1, 2, 2, 1]
    assert rows["dagster_run_id"].to_list()[:4] == [steps[s]["result"].run_id for s in "ABCD"]
    kept = rows.row(1, named=True)
    assert kept["metric"] == "auc" and kept["margin"] == 0.0 and kept["improvement"] == 0.0
    assert kept["challenger_value"] == kept["champion_value"] > 0.5
    shown = {"auc", "log_loss", "accuracy", "precision", "recall"}
    assert set(json.loads(kept["champion_metrics"])) >= shown
    assert kept["window_rows"] == 90 and kept["window_start"] < kept["window_end"]
    assert kept["gate"] == "failed (warn)" and rows["gate"][3] == "failed (error)"
    # append-only: each commit added one row and kept every earlier one
    table = open_table(uri)
    assert table.version() == 4
    for version in range(5):
        assert read_table(uri, version).height == version + 1


def test_evaluation_reports_calibration_confusion_and_importance(story):
    lab, steps = story
    meta = lab.meta("evaluation")  # v4 against v2
    for key in ("auc", "log_loss", "accuracy", "precision", "recall", "threshold"):
        assert isinstance(meta[key], float), key
    assert meta["calibration"].count("\n") == 11  # header, separator and 10 bins
    assert meta["confusion_matrix"].startswith("| actual | predicted_0 | predicted_1 |")
    assert "| nswprice |" in meta["feature_importance"]
    assert meta["chart"].startswith("![calibration and feature importance](data:image/png;base64,")
    run_id = lab.meta("model")["mlflow_run_id"]
    saved = {a.path for a in lab.client().list_artifacts(run_id, "evaluation")}
    assert saved == {"evaluation/holdout.png", "evaluation/metrics.json"}


def test_each_version_gets_a_model_card_from_its_lineage(story):
    lab, steps = story
    card = steps["A"]["champion_meta"]["model_card"]
    assert card.startswith(f"# Model card: {NAME} version 1")
    assert "**Promotion decision:** promoted (no champion yet)" in card
    assert f"`{lab.uri('training_set', SPEC.name)}` at Delta version 0" in card
    assert "Built from features Delta version 0" in card
    assert "| hour | integer |" in card  # the schema, from the registered signature
    assert "3 trials (3 complete, 0 pruned, 0 failed)" in card
    assert "| challenger | 1 |" in card
    assert "| evaluation:promotion_gate | passed |" in card
    assert "| features:no_single_feature_leak | passed |" in card  # a check upstream
    assert "Trained on data from 2024-01-01 00:00:00+00:00 to 2024-03-14" in card
    client = lab.client()
    run_id = client.get_model_version(NAME, "1").run_id
    import mlflow

    mlflow.set_tracking_uri(lab.tracking_uri)
    assert mlflow.artifacts.load_text(f"runs:/{run_id}/model_card.md") == card
    assert Path(steps["A"]["champion_meta"]["model_card_path"]).read_text() == card


@pytest.mark.parametrize(
    ("metric", "champion", "challenger", "margin", "verdict"),
    [
        ("auc", 0.70, 0.72, 0.01, "promote"),
        ("auc", 0.70, 0.705, 0.01, "keep"),
        ("log_loss", 0.60, 0.55, 0.01, "promote"),  # lower is better
        ("log_loss", 0.55, 0.60, 0.0, "keep"),
        ("auc", float("nan"), 0.60, 0.0, "promote"),  # a champion that cannot be measured
        ("auc", 0.70, float("nan"), 0.0, "reject"),
    ],
)
def test_the_promotion_rule_compares_on_the_configured_metric_and_margin(
    metric, champion, challenger, margin, verdict
):
    decision = decide(metric=metric, margin=margin, challenger_version=2,
                      challenger={metric: challenger}, champion_version=1, champion={metric: champion})
    assert decision.verdict == verdict, decision.reason
