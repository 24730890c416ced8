"""Training: the training set, the hyperparameter search, the model and its evaluation."""

import json
import math

import dagster as dg
import numpy as np
import polars as pl
from pydantic import Field

from mlops_assets.datasets import current_spec
from mlops_assets.defs.features import features
from mlops_assets.features import feature_columns
from mlops_assets.resources import Lake, MlflowTracking, OptunaStudies
from mlops_assets.tables import markdown_table, read_table, table_metadata, table_version, write_table
from mlops_assets.training import (
    binary_metrics,
    choose_windows,
    content_hash,
    split_training_set,
    train_booster,
    tune,
)

SPEC = current_spec()
MODEL_NAME = f"{SPEC.name}_lightgbm"


class TrainingSetConfig(dg.Config):
    train_windows: int = Field(default=3, description="How many windows before the scoring window to train on.")
    scoring_window: str = Field(default="", description="Window to score (YYYY-MM); empty = the latest.")
    valid_share: float = Field(default=0.15, description="Share of rows, by time, for early stopping and tuning.")
    holdout_share: float = Field(default=0.15, description="Latest share of rows, held out for evaluation.")


@dg.asset(group_name="training", kinds={"polars", "delta"}, deps=[features], code_version="1")
def training_set(context: dg.AssetExecutionContext, config: TrainingSetConfig, lake: Lake) -> dg.MaterializeResult:
    """Labelled rows of the windows before the scoring window, split by time into train, valid
    and holdout. Rows whose label falls inside the scoring window are left out (embargo).
    Its metadata records the Delta versions it was built from and a content hash, so the exact
    set can be rebuilt later by time travel."""
    feat_uri = lake.uri("features", SPEC.name)
    feat_version = table_version(feat_uri, lake.options)
    feats = read_table(feat_uri, feat_version, lake.options)
    windows = choose_windows(feats["window"].to_list(), config.train_windows, config.scoring_window or None)
    df = split_training_set(SPEC, feats, windows, config.valid_share, config.holdout_share)
    digest = content_hash(df)
    result = write_table(
        lake.uri("training_set", SPEC.name), df, mode="overwrite", evolve_schema=True,
        storage_options=lake.options,
        commit_metadata={"features_version": str(feat_version), "content_sha256": digest},
    )
    sizes = df.group_by("split").agg(pl.len().alias("rows"), pl.col(SPEC.label).mean().alias("positive_rate"))
    context.log.info(
        "Training set: windows %s (scoring %s), %d rows, features version %s",
        windows.train, windows.scoring, df.height, feat_version,
    )
    return dg.MaterializeResult(
        metadata={
            **table_metadata(result, df),
            "features_delta_version": feat_version,
            "raw_delta_version": _raw_version_of(context, feat_version),
            "train_windows": ", ".join(windows.train),
            "scoring_window": windows.scoring,
            "time_range": f"{df[SPEC.timestamp].min()} .. {df[SPEC.timestamp].max()}",
            "content_sha256": digest,
            "splits": dg.MetadataValue.md(markdown_table(sizes.sort("split"))),
        }
    )


def _raw_version_of(context: dg.AssetExecutionContext, feat_version: int | None) -> int:
    """The raw table version the current features were built from, from the features' metadata."""
    event = context.instance.get_latest_materialization_event(features.key)
    meta = event.asset_materialization.metadata if event and event.asset_materialization else {}
    value = meta.get("raw_delta_version")
    return int(value.value) if value is not None else -1


def _splits(lake: Lake, version: int | None = None):
    uri = lake.uri("training_set", SPEC.name)
    version = table_version(uri, lake.options) if version is None else version
    df = read_table(uri, version, lake.options)
    parts = {name: df.filter(pl.col("split") == name) for name in ("train", "valid", "holdout")}
    return version, df, parts


class TuningConfig(dg.Config):
    n_trials: int = Field(default=20, description="Trials in the Optuna study (raise for a wider search).")
    timeout_s: float = Field(default=0, description="Stop the search after this many seconds (0 = no limit).")


@dg.asset(group_name="training", kinds={"optuna"}, deps=[training_set], code_version="1")
def hyperparameters(context: dg.AssetExecutionContext, config: TuningConfig, lake: Lake, optuna: OptunaStudies) -> dg.Output:
    """The best LightGBM parameters found by a seeded Optuna study maximising validation AUC.
    The study is stored persistently and named after the training set's content, so rerunning on
    the same data resumes it instead of starting over."""
    version, df, parts = _splits(lake)
    feats = feature_columns(SPEC, parts["train"].drop("split"))
    study_name = f"{MODEL_NAME}-{content_hash(df)[:12]}"

    def progress(study, trial):
        best = study.best_value if any(t.value is not None for t in study.trials) else float("nan")
        context.log.info("trial %d: %s value=%s best=%.4f", trial.number, trial.state.name, trial.value, best)

    study = tune(
        parts["train"], parts["valid"], feats, SPEC.label, n_trials=config.n_trials,
        storage=optuna.storage, study_name=study_name, timeout=config.timeout_s or None, on_trial=progress,
    )
    best = study.best_trial
    params = {**best.params, "bagging_freq": 1}
    trials = pl.DataFrame(
        [(t.number, t.state.name, t.value) for t in study.trials], schema=["trial", "state", "value"], orient="row"
    )
    return dg.Output(
        params,
        metadata={
            "study_name": study_name,
            "storage": optuna.storage,
            "trials": len(study.trials),
            "best_trial": best.number,
            "best_valid_auc": float(best.value),
            "best_params": dg.MetadataValue.json(params),
            "training_set_delta_version": version,
            "trials_table": dg.MetadataValue.md(markdown_table(trials.tail(30))),
        },
    )


def _signature(df: pl.DataFrame, feats: list[str]):
    """MLflow signature from the feature table's declared types (not guessed from a sample)."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    kinds = {pl.Float64: "double", pl.Float32: "float", pl.Int64: "long", pl.Int32: "integer",
             pl.Int16: "integer", pl.Int8: "integer", pl.UInt32: "long", pl.Boolean: "boolean"}
    cols = [ColSpec(kinds.get(df.schema[c], "double"), c) for c in feats]
    return ModelSignature(inputs=Schema(cols), outputs=Schema([ColSpec("double", "probability")]))


@dg.asset(group_name="training", kinds={"lightgbm", "mlflow"}, code_version="1")
def model(context: dg.AssetExecutionContext, hyperparameters: dict, lake: Lake, mlflow: MlflowTracking) -> dg.Output:
    """The LightGBM classifier trained on the training set with the best parameters, logged to
    MLflow (params, per-round validation metrics, feature importance, signature, input example)
    and registered as a new version of the registered model with the alias ``challenger``."""
    import lightgbm as lgb
    from mlflow.entities import Metric

    version, df, parts = _splits(lake)
    feats = feature_columns(SPEC, parts["train"].drop("split"))
    record: dict = {}
    booster = train_booster(hyperparameters, parts["train"], parts["valid"], feats, SPEC.label, record=record)
    best_it = booster.best_iteration
    metrics = {}
    for split in ("valid", "holdout"):
        part = parts[split]
        p = booster.predict(part.select(feats).to_numpy(), num_iteration=best_it)
        metrics.update({f"{split}_{k}": v for k, v in binary_metrics(part[SPEC.label].to_numpy(), p).items()})
    bad = {k: v for k, v in metrics.items() if not math.isfinite(v)}
    if bad:
        raise dg.Failure(f"Model metrics are not finite: {bad}; nothing logged or registered.")

    gain = booster.feature_importance("gain")
    importance = pl.DataFrame({"feature": feats, "gain": gain.astype(float)}).sort("gain", descending=True)
    example = parts["train"].select(feats).drop_nulls().head(5).to_pandas()
    digest = content_hash(df)

    ml, _ = mlflow.setup()
    with mlflow.start_run(context, run_name=f"{MODEL_NAME}-{context.run.run_id[:8]}") as run:
        ml.log_params({**hyperparameters, "best_iteration": best_it, "features": len(feats)})
        ml.set_tags({"training_set_delta_version": str(version), "training_set_sha256": digest})
        ml.log_metrics(metrics)
        series = record.get("valid", {})
        history = [Metric(f"valid_{name}", float(v), 0, i) for name, vals in series.items() for i, v in enumerate(vals)]
        for i in range(0, len(history), 900):
            mlflow.client().log_batch(run.info.run_id, metrics=history[i : i + 900])
        ml.log_dict(dict(zip(feats, map(float, gain))), "feature_importance_gain.json")
        ml.log_dict({"training_set_delta_version": version, "content_sha256": digest, "features": feats},
                    "training_set.json")
        info = ml.lightgbm.log_model(
            booster, name="model", signature=_signature(parts["train"], feats), input_example=example,
            pip_requirements=[f"lightgbm=={lgb.__version__}"], registered_model_name=MODEL_NAME,
        )
        run_id, exp_id = run.info.run_id, run.info.experiment_id
    client = mlflow.client()
    mv = client.get_model_version(MODEL_NAME, str(info.registered_model_version))
    if not mv.source:
        raise dg.Failure(f"{MODEL_NAME} version {mv.version} was registered without a source.")
    client.set_registered_model_alias(MODEL_NAME, "challenger", mv.version)
    context.log.info(
        "Registered %s version %s (run %s): valid AUC %.4f, holdout AUC %.4f",
        MODEL_NAME, mv.version, run_id, metrics["valid_auc"], metrics["holdout_auc"],
    )
    ref = {
        "name": MODEL_NAME, "version": int(mv.version), "run_id": run_id, "experiment_id": exp_id,
        "uri": f"models:/{MODEL_NAME}/{mv.version}", "training_set_version": version,
        "features": feats, "best_iteration": best_it, "metrics": metrics,
    }
    return dg.Output(
        ref,
        metadata={
            "model_name": MODEL_NAME,
            "model_version": int(mv.version),
            "mlflow_run_id": run_id,
            "mlflow_run": dg.MetadataValue.url(mlflow.run_url(exp_id, run_id)),
            "mlflow_model": dg.MetadataValue.url(mlflow.model_url(MODEL_NAME, mv.version)),
            "training_set_delta_version": version,
            "best_iteration": best_it,
            **{k: float(v) for k, v in metrics.items() if k.endswith(("auc", "log_loss", "accuracy"))},
            "feature_importance": dg.MetadataValue.md(markdown_table(importance.head(15))),
        },
    )


@dg.asset(group_name="training", kinds={"lightgbm"}, code_version="1")
def evaluation(context: dg.AssetExecutionContext, model: dict, lake: Lake, mlflow: MlflowTracking) -> dg.Output:
    """Holdout metrics of the new model and, on the same rows, of the current champion: the
    evidence the promotion decision rests on."""
    import mlflow as ml

    mlflow.setup()
    _, _, parts = _splits(lake, model["training_set_version"])
    holdout = parts["holdout"]
    y = holdout[SPEC.label].to_numpy()

    def score(uri: str, feats: list[str]) -> dict:
        booster = ml.lightgbm.load_model(uri)
        return binary_metrics(y, booster.predict(holdout.select(feats).to_numpy()))

    challenger = score(model["uri"], model["features"])
    champion_version, champion = None, None
    try:
        mv = mlflow.client().get_model_version_by_alias(model["name"], "champion")
        champion_version = int(mv.version)
    except Exception:  # no champion yet
        pass
    if champion_version is not None:
        champ_feats = json.loads(
            ml.artifacts.load_text(f"runs:/{mv.run_id}/training_set.json")
        )["features"]
        if set(champ_feats) <= set(holdout.columns):
            champion = score(f"models:/{model['name']}/{champion_version}", champ_feats)
    rows = [("challenger", model["version"], *[challenger[k] for k in ("auc", "log_loss", "accuracy")])]
    if champion:
        rows.append(("champion", champion_version, *[champion[k] for k in ("auc", "log_loss", "accuracy")]))
    table = pl.DataFrame(rows, schema=["role", "version", "auc", "log_loss", "accuracy"], orient="row")
    context.log.info("Holdout (%d rows): %s", len(y), table.to_dicts())
    out = {"challenger": challenger, "champion": champion, "champion_version": champion_version,
           "holdout_rows": len(y), "model": model}
    return dg.Output(
        out,
        metadata={
            "holdout_rows": len(y),
            "auc": challenger["auc"],
            "log_loss": challenger["log_loss"],
            "accuracy": challenger["accuracy"],
            "precision": challenger["precision"],
            "recall": challenger["recall"],
            **({"champion_auc": champion["auc"]} if champion else {}),
            "comparison": dg.MetadataValue.md(markdown_table(table)),
        },
    )
