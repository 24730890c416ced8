"""Tuning, training and tracking: pruning and non-finite trials (case c16), deterministic
boosters, refusal of bad training sets before anything is logged, and what one training
records in MLflow. Real Optuna SQLite storage, real MLflow (SQLite), real Delta and Dagster."""

import math
import time

import dagster as dg
import lightgbm as lgb
import numpy as np
import optuna
import polars as pl
import pytest
from model_lab import SPEC, Lab, keep_mlflow_environment, synthetic_features

from mlops_assets.features import feature_columns
from mlops_assets.registry import RegistryError, require_signature
from mlops_assets.tables import read_table, write_table
from mlops_assets.training import (
    BASE_PARAMS,
    TrainingSetError,
    choose_windows,
    make_pruner,
    run_study,
    split_training_set,
    train_booster,
    tune,
    validate_training_set,
)


@pytest.fixture(autouse=True, scope="module")
def _mlflow_environment():
    yield from keep_mlflow_environment()


PARAMS = {"learning_rate": 0.1, "num_leaves": 15, "min_data_in_leaf": 10, "feature_fraction": 0.7,
          "bagging_fraction": 0.7, "bagging_freq": 1}


def _training_set() -> pl.DataFrame:
    feats = synthetic_features()
    return split_training_set(SPEC, feats, choose_windows(feats["window"].to_list(), 3))


def _parts(df: pl.DataFrame) -> tuple[dict, list[str]]:
    feats = feature_columns(SPEC, df.drop("split"))
    return {s: df.filter(pl.col("split") == s) for s in ("train", "valid", "holdout")}, feats


# --------------------------------------------------------------------------------------------
# Tuning


def test_a_non_finite_trial_ends_pruned_or_failed_with_a_reason(tmp_path):
    """Case c16: an objective reporting 0.41, NaN, inf and returning NaN, on persistent storage."""
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    script = {
        0: ([0.41], 0.41),                                     # a normal trial
        1: ([0.41, math.nan, math.inf], math.nan),             # the whole sequence: stops at NaN
        2: ([0.41, math.inf], 0.5),                            # inf alone
        3: ([0.41], math.nan),                                 # finite reports, NaN result
        4: ([0.41], math.inf),
        5: ([0.41], None),
    }

    def objective(trial):
        reports, value = script[trial.number]
        for step, reported in enumerate(reports):
            trial.report(reported, step)
        if trial.number == 5:
            raise ValueError("the booster could not be built")
        return value

    run_study(objective, study_name="c16", storage=storage, n_trials=len(script))

    study = optuna.load_study(study_name="c16", storage=storage)  # the storage reads back fine
    states = {t.number: t.state.name for t in study.trials}
    assert states == {0: "COMPLETE", 1: "PRUNED", 2: "PRUNED", 3: "FAIL", 4: "FAIL", 5: "FAIL"}
    reasons = {t.number: t.user_attrs.get("pruned_reason") or t.user_attrs.get("failed_reason")
               for t in study.trials}
    assert "nan" in reasons[1] and "step 1" in reasons[1]
    assert "inf" in reasons[2]
    assert "non-finite" in reasons[3] and "non-finite" in reasons[4]
    assert "could not be built" in reasons[5]
    assert study.trials[1].intermediate_values == {0: 0.41}  # NaN never reached the storage
    assert study.best_trial.number == 0 and study.best_value == 0.41
    counted = sum(states[n] in ("COMPLETE", "PRUNED", "FAIL") for n in states)
    assert counted == len(study.trials) == len(script)
    frame = study.trials_dataframe()
    assert frame["user_attrs_failed_reason"].notna().sum() == 3


def test_a_study_where_no_trial_completes_says_why(tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    with pytest.raises(RuntimeError, match="No trial .* completed.*non-finite"):
        run_study(lambda trial: math.nan, study_name="all_nan", storage=storage, n_trials=2)


def test_pruning_stops_poor_trials_on_the_validation_auc(tmp_path):
    parts, feats = _parts(_training_set())

    def search(name, pruner):
        study = tune(parts["train"], parts["valid"], feats, SPEC.label, n_trials=8,
                     storage=f"sqlite:///{tmp_path / 'optuna.db'}", study_name=name, pruner=pruner)
        return [(t.state.name, t.value, t.user_attrs.get("pruned_at_round")) for t in study.trials]

    aggressive = make_pruner(startup_trials=1, warmup_rounds=0)
    pruned = search("pruned", aggressive)
    assert any(state == "PRUNED" for state, _, _ in pruned), pruned
    for state, _, at_round in pruned:
        if state == "PRUNED":
            assert at_round and at_round % 10 == 0  # reported every 10 rounds
    # Without a pruner the same seeded search runs every trial to the end...
    assert all(state == "COMPLETE" for state, _, _ in search("unpruned", optuna.pruners.NopPruner()))
    # ...and with one it is still reproducible.
    assert search("pruned_again", make_pruner(startup_trials=1, warmup_rounds=0)) == pruned


def test_the_search_stops_at_its_time_budget(tmp_path):
    def slow(trial):
        time.sleep(0.2)
        return trial.suggest_float("x", 0, 1)

    started = time.monotonic()
    study = run_study(slow, study_name="budget", storage=f"sqlite:///{tmp_path / 'o.db'}",
                      n_trials=1000, timeout=1.0)
    assert 1 <= len(study.trials) < 20
    assert time.monotonic() - started < 5


def test_the_default_journal_storage_resumes_a_study(tmp_path):
    """The default storage is a journal file: its folder is made, and running the same study again
    adds only the trials missing from the budget."""
    journal = tmp_path / "optuna" / "journal.log"

    def objective(trial):
        return trial.suggest_float("x", 0, 1)

    first = run_study(objective, study_name="resume", storage=str(journal), n_trials=4)
    params, best = [t.params for t in first.trials], first.best_value
    assert journal.exists() and len(params) == 4
    again = run_study(objective, study_name="resume", storage=str(journal), n_trials=4)
    assert len(again.trials) == 4 and again.best_value == best
    more = run_study(objective, study_name="resume", storage=str(journal), n_trials=6)
    assert len(more.trials) == 6 and [t.params for t in more.trials[:4]] == params


def test_a_bad_storage_setting_is_named_and_folders_are_made(tmp_path, monkeypatch):
    from mlops_assets.training import study_storage

    with pytest.raises(ValueError, match="MLOPS_OPTUNA_STORAGE"):
        study_storage("  ")
    with pytest.raises(ValueError, match="is a folder"):
        study_storage(str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    study_storage("~/studies/journal.log")
    assert (tmp_path / "user" / "studies").is_dir()
    url = f"sqlite:///{tmp_path / 'new' / 'o.db'}"
    assert study_storage(url) == url and (tmp_path / "new").is_dir()


def test_a_home_made_before_the_journal_default_keeps_its_sqlite_studies(tmp_path, monkeypatch):
    from mlops_assets.settings import Home

    monkeypatch.delenv("MLOPS_OPTUNA_STORAGE", raising=False)
    home = Home(tmp_path)
    assert home.optuna_storage == str(tmp_path / "optuna" / "journal.log")
    (tmp_path / "optuna").mkdir()
    (tmp_path / "optuna" / "optuna.db").touch()
    assert home.optuna_storage == f"sqlite:///{tmp_path / 'optuna' / 'optuna.db'}"
    monkeypatch.setenv("MLOPS_OPTUNA_STORAGE", "elsewhere.log")
    assert home.optuna_storage == "elsewhere.log"


# --------------------------------------------------------------------------------------------
# Content hashes of training sets


def test_the_content_hash_sees_values_nulls_order_names_and_types():
    from mlops_assets.training import content_hash

    df = synthetic_features()
    row5 = pl.int_range(pl.len()) == 5
    variants = [
        df.with_columns(pl.when(row5).then(None).otherwise(pl.col("nswprice")).alias("nswprice")),
        df.with_columns(pl.when(row5).then(0.0).otherwise(pl.col("nswprice")).alias("nswprice")),
        df.with_columns(pl.when(row5).then(None).otherwise(pl.col("hour")).alias("hour")),
        df.with_columns(pl.when(row5).then(0).otherwise(pl.col("hour")).cast(pl.Int8).alias("hour")),
        df.reverse(),
        df.head(df.height - 1),
        df.rename({"hour": "hour_of_day"}),
        df.with_columns(pl.col("hour").cast(pl.Int16)),
        df.with_columns(pl.when(row5).then(pl.lit("2024-0")).otherwise(pl.col("window")).alias("window")),
    ]
    hashes = {content_hash(v) for v in variants}
    assert content_hash(df) == content_hash(df.clone()) and content_hash(df) not in hashes
    assert len(hashes) == len(variants)
    # text is hashed with each value's length: moving a character between values shows
    assert content_hash(pl.DataFrame({"s": ["ab", "c"]})) != content_hash(pl.DataFrame({"s": ["a", "bc"]}))
    # types numpy cannot hold value by value are hashed from their text, the same every time
    from decimal import Decimal

    def decimals(*values):
        return pl.DataFrame({"d": list(values)}, schema={"d": pl.Decimal(10, 2)})

    assert content_hash(decimals(Decimal("1.10"), None)) == content_hash(decimals(Decimal("1.10"), None))
    assert content_hash(decimals(Decimal("1.10"), None)) != content_hash(decimals(Decimal("1.20"), None))
    wide = pl.DataFrame({"i": [2**100, 1]}, schema={"i": pl.Int128})
    assert content_hash(wide) != content_hash(wide.reverse())


def test_the_content_hash_is_pinned_and_older_csv_hashes_still_verify():
    """The digest must not change with library versions: a golden value for a small frame with
    every kind of column and a null in each. Hashes recorded by earlier builds (CSV) verify too."""
    from datetime import datetime, timezone

    from mlops_assets.training import content_hash, csv_content_hash, matches_content_hash

    df = pl.DataFrame({"ts": [datetime(2024, 1, 1, tzinfo=timezone.utc), None], "w": ["2024-01", None],
                       "x": [0.5, None], "n": [1, None], "b": [True, None]})
    assert content_hash(df) == "a014ab6cfc4a60644b5eec445c1c9034bcc00b8636ec4583ce65c3a53daa951e"
    frame = synthetic_features()
    assert matches_content_hash(frame, content_hash(frame)) == (True, content_hash(frame))
    assert matches_content_hash(frame, csv_content_hash(frame)) == (True, csv_content_hash(frame))
    assert matches_content_hash(frame.reverse(), content_hash(frame))[0] is False
    assert matches_content_hash(frame.reverse(), csv_content_hash(frame))[0] is False


# --------------------------------------------------------------------------------------------
# Training


def test_same_data_params_and_seed_give_the_same_booster():
    parts, feats = _parts(_training_set())

    def dump(seed):
        booster = train_booster({**PARAMS, "seed": seed}, parts["train"], parts["valid"], feats, SPEC.label)
        return booster.model_to_string()

    first = dump(BASE_PARAMS["seed"])
    assert dump(BASE_PARAMS["seed"]) == first
    # bagging and feature sampling depend on the seed, so the comparison above is not vacuous
    assert dump(BASE_PARAMS["seed"] + 1) != first


def _with(df: pl.DataFrame, **changes) -> pl.DataFrame:
    return df.with_columns(**changes)


def _label_in_row(df: pl.DataFrame, row: int, value) -> pl.Series:
    return pl.Series(SPEC.label, [value if i == row else v for i, v in enumerate(df[SPEC.label].to_list())],
                     dtype=pl.Float64)


BAD_SETS = {
    # a NaN label, e.g. from a float cast upstream
    "nan_label": (lambda df: _with(df, **{SPEC.label: _label_in_row(df, 3, math.nan)}),
                  "label 'price_up_ahead' is NaN in 1 row"),
    "inf_label": (lambda df: _with(df, **{SPEC.label: _label_in_row(df, 5, math.inf)}),
                  "label 'price_up_ahead' is inf in 1 row"),
    # a window where the price never went up
    "no_positive_in_train": (
        lambda df: _with(df, **{SPEC.label: pl.when(pl.col("split") == "train").then(0)
                                .otherwise(pl.col(SPEC.label))}),
        "split 'train' has no positive labels"),
    "missing_feature": (lambda df: df.drop("nswprice"), "lacks column(s) ['nswprice']"),
    "inf_feature": (lambda df: _with(df, vicdemand=pl.when(pl.int_range(pl.len()) == 7).then(math.inf)
                                     .otherwise(pl.col("vicdemand"))),
                    "feature column(s) ['vicdemand'] hold inf"),
}


@pytest.mark.parametrize("case", list(BAD_SETS))
def test_a_bad_training_set_is_refused_naming_the_problem(case):
    spoil, message = BAD_SETS[case]
    df = spoil(_training_set())
    with pytest.raises(TrainingSetError) as error:
        validate_training_set(SPEC, df, feature_columns(SPEC, df.drop("split")))
    assert message in str(error.value)


def test_a_bad_training_set_fails_before_anything_is_logged_or_registered(tmp_path):
    df = _training_set()
    df = df.with_columns(**{SPEC.label: _label_in_row(df, 3, math.nan)})
    with dg.instance_for_test() as instance:
        lab = Lab(tmp_path, instance)
        write_table(lab.uri("training_set", SPEC.name), df, mode="overwrite")
        result = lab.materialize(["hyperparameters", "model"], raise_on_error=False)
        assert not result.success
        failure = next(e for e in result.all_events if e.is_step_failure)
        error = failure.step_failure_data.error
        while error.cause is not None:
            error = error.cause
        assert "price_up_ahead' is NaN in 1 row" in error.message
        client = lab.client()
        assert client.search_registered_models() == []
        experiments = client.search_experiments()
        assert client.search_runs([e.experiment_id for e in experiments]) == []
        assert optuna.get_all_study_names(f"sqlite:///{tmp_path / 'optuna.db'}") == []


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Features → training set → tuning → model v1; model v2 retrained from the same pinned
    version; then the training set is rebuilt (new Delta version, other rows) and v3 is trained
    without tuning again."""
    root = tmp_path_factory.mktemp("trained")
    with dg.instance_for_test() as instance:
        lab = Lab(root, instance)
        lab.write_features()
        lab.materialize(["training_set", "hyperparameters", "model"], trials=6)
        lab.materialize(["model"])
        lab.write_features(synthetic_features(seed=1))
        lab.materialize(["training_set"])
        lab.materialize(["model"])
        yield lab


def test_the_model_run_records_its_data_versions_and_dagster_lineage(trained):
    client = trained.client()
    meta = trained.meta("model")
    run = client.get_run(meta["mlflow_run_id"])
    inputs = {d.dataset.name: d for d in run.inputs.dataset_inputs}
    assert set(inputs) == {f"training_set/{SPEC.name}@v0:{s}" for s in ("train", "valid", "holdout")}
    train = inputs[f"training_set/{SPEC.name}@v0:train"]
    assert train.dataset.source_type == "delta_table"
    assert trained.uri("training_set", SPEC.name) in train.dataset.source
    assert {t.key: t.value for t in train.tags}["mlflow.data.context"] == "training"
    tags = run.data.tags
    event = trained.instance.get_latest_materialization_event(dg.AssetKey("model"))
    assert tags["dagster_run_id"] == event.run_id
    assert tags["dagster_asset_key"] == "model"
    from mlops_assets.defs.training import model

    assert tags["dagster_code_version"] == model.code_versions_by_key[dg.AssetKey("model")]
    assert tags["training_set_delta_version"] == "0" and tags["features_delta_version"] == "0"
    history = client.get_metric_history(run.info.run_id, "valid_auc")
    assert len(history) > meta["best_iteration"]  # one value per boosting round
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"feature_importance_gain.json", "training_set.json", "tuning.json"} <= artifacts


def test_the_registered_version_has_the_declared_signature_and_an_input_example(trained):
    import mlflow
    from mlflow.models import Model

    meta = trained.meta("model")
    mlflow.set_tracking_uri(trained.tracking_uri)
    info = mlflow.models.get_model_info(f"models:/{meta['model_name']}/{meta['model_version']}")
    inputs = {c["name"]: c["type"] for c in info.signature.inputs.to_dict()}
    assert inputs["hour"] == "integer"  # declared Int8 in the table, not guessed from values
    assert inputs["nswprice"] == "double"
    assert SPEC.label not in inputs and "split" not in inputs
    local = mlflow.artifacts.download_artifacts(f"models:/{meta['model_name']}/{meta['model_version']}")
    example = Model.load(local).load_input_example(local)
    assert list(example.columns) == list(inputs) and len(example) == 5
    client = trained.client()
    assert int(client.get_model_version_by_alias(meta["model_name"], "challenger").version) == 3


def test_retraining_on_the_pinned_training_set_version_gives_the_same_booster(trained):
    import mlflow

    mlflow.set_tracking_uri(trained.tracking_uri)
    dumps = [mlflow.lightgbm.load_model(f"models:/{SPEC.name}_lightgbm/{v}").model_to_string()
             for v in (1, 2, 3)]
    assert dumps[0] == dumps[1] == dumps[2]
    # v3 ran after the training set was rebuilt from other rows (Delta version 1), yet it was
    # trained on version 0, the one its hyperparameters were tuned on.
    assert trained.meta("training_set")["delta_version"] == 1
    assert trained.meta("model")["training_set_delta_version"] == 0
    assert read_table(trained.uri("training_set", SPEC.name)).height > 0


def test_tuning_reports_trials_and_charts_in_metadata_and_mlflow(trained):
    meta = trained.meta("hyperparameters")
    assert meta["trials"] == 6
    assert meta["trials_complete"] + meta["trials_pruned"] + meta["trials_failed"] == 6
    assert meta["optimisation_history"].startswith("![optimisation history](data:image/png;base64,")
    assert "| parameter | importance |" in meta["param_importances"]
    artifacts = {a.path for a in trained.client().list_artifacts(meta["mlflow_run_id"], "tuning")}
    assert {"tuning/optimisation_history.png", "tuning/param_importances.png",
            "tuning/trials.csv", "tuning/summary.json"} <= artifacts


def test_registration_refuses_a_version_without_a_signature(tmp_path):
    import mlflow

    with dg.instance_for_test() as instance:
        lab = Lab(tmp_path, instance)
    ml, experiment = lab.resources["mlflow"].setup()
    x = np.random.default_rng(0).uniform(size=(60, 2))
    booster = lgb.train({"objective": "binary", "verbosity": -1},
                        lgb.Dataset(x, label=(x[:, 0] > 0.5).astype(int)), 3)
    with mlflow.start_run(experiment_id=experiment):
        info = ml.lightgbm.log_model(booster, name="model", registered_model_name="unsigned",
                                     pip_requirements=["lightgbm"])
    client = lab.client()
    with pytest.raises(RegistryError, match="unsigned version 1 has no input signature"):
        require_signature(client, "unsigned", info.registered_model_version, ["Column_0", "Column_1"])
    assert client.search_model_versions("name='unsigned'") == []


def test_a_study_is_named_after_the_hash_its_training_set_recorded(tmp_path, monkeypatch):
    """A training set written by an earlier build recorded a CSV content hash: tuning on it names
    the study after that hash (so the study of the same data resumes) and the model verifies."""
    from mlops_assets.defs import training as training_defs
    from mlops_assets.training import content_hash, csv_content_hash

    with dg.instance_for_test() as instance:
        lab = Lab(tmp_path, instance)
        lab.write_features()
        monkeypatch.setattr(training_defs, "content_hash", csv_content_hash)  # the earlier build
        lab.materialize(["training_set"])
        monkeypatch.undo()
        legacy = lab.meta("training_set")["content_sha256"]
        frame = read_table(lab.uri("training_set", SPEC.name))
        assert legacy == csv_content_hash(frame) != content_hash(frame)
        lab.materialize(["hyperparameters", "model"], trials=2)
        assert lab.meta("hyperparameters")["study_name"].endswith(legacy[:12])
        run = lab.client().get_run(lab.meta("model")["mlflow_run_id"])
        assert run.data.tags["training_set_sha256"] == legacy
