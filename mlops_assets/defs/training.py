"""Training: the training set, the hyperparameter search, the model and its evaluation.

Every step after ``training_set`` reads one pinned Delta version of it and validates it first
(:func:`mlops_assets.training.validate_training_set`), so a bad training set fails with the
reason before anything is tuned, logged or registered.
"""

import math

import dagster as dg
import polars as pl
from pydantic import Field

from mlops_assets import plots
from mlops_assets.audit import provenance
from mlops_assets.datasets import current_spec
from mlops_assets.defs.features import features
from mlops_assets.features import feature_columns
from mlops_assets.registry import CHALLENGER, CHAMPION, alias_version, require_signature
from mlops_assets.resources import Lake, MlflowTracking, OptunaStudies
from mlops_assets.tables import (
    markdown_table,
    open_table,
    read_table,
    table_metadata,
    table_version,
    write_table,
)
from mlops_assets.versions import code_version_for, delta_data_version, value_data_version
from mlops_assets.training import (
    order_column,
    SPLITS,
    binary_metrics,
    calibration_table,
    choose_windows,
    confusion_matrix,
    content_hash,
    matches_content_hash,
    make_pruner,
    param_importances,
    split_training_set,
    train_booster,
    trial_outcome,
    tune,
    validate_training_set,
)

SPEC = current_spec()
MODEL_NAME = f"{SPEC.name}_lightgbm"
HYPERPARAMETERS_KEY = dg.AssetKey("hyperparameters")

# Code versions (see mlops_assets.versions): this module and the training functions, with the
# libraries that compute each asset.
TRAINING_CODE = code_version_for(__name__, "mlops_assets.training", libraries=("polars",))
TUNING_CODE = code_version_for(__name__, "mlops_assets.training", libraries=("lightgbm", "optuna"))
MODEL_CODE = code_version_for(__name__, "mlops_assets.training", "mlops_assets.registry",
                              libraries=("lightgbm", "scikit-learn"))


class TrainingSetConfig(dg.Config):
    train_windows: int = Field(default=3, description="How many windows before the scoring window to train on.")
    scoring_window: str = Field(default="", description="Window to score (YYYY-MM); empty = the latest.")
    valid_share: float = Field(default=0.15, description="Share of rows, by time, for early stopping and tuning.")
    holdout_share: float = Field(default=0.15, description="Latest share of rows, held out for evaluation.")


@dg.asset(group_name="training", kinds={"polars", "delta"}, deps=[features], code_version=TRAINING_CODE)
def training_set(
    context: dg.AssetExecutionContext, config: TrainingSetConfig, lake: Lake
) -> dg.MaterializeResult:
    """Labelled rows of the windows before the scoring window, split by time into train, valid
    and holdout. Rows whose label falls inside the scoring window are left out (embargo).
    Each Delta commit records the versions it was built from, its windows and a content hash,
    so the exact set can be read again by time travel and its lineage told from the table alone."""
    feat_uri = lake.uri("features", SPEC.name)
    feat_version = table_version(feat_uri, lake.options)
    feats = read_table(feat_uri, feat_version, lake.options)
    windows = choose_windows(
        feats["window"].to_list(), config.train_windows, config.scoring_window or None
    )
    df = split_training_set(SPEC, feats, windows, config.valid_share, config.holdout_share)
    validate_training_set(SPEC, df, feature_columns(SPEC, df.drop("split")))
    digest = content_hash(df)
    raw_version = _raw_version_of(context, feat_version)
    result = write_table(
        lake.uri("training_set", SPEC.name), df, mode="overwrite", evolve_schema=True,
        storage_options=lake.options,
        commit_metadata=provenance(
            context.run.run_id,
            features_version=feat_version, raw_version=raw_version, content_sha256=digest,
            train_windows=",".join(windows.train), scoring_window=windows.scoring,
            valid_share=config.valid_share, holdout_share=config.holdout_share,
        ),
    )
    sizes = df.group_by("split").agg(
        pl.len().alias("rows"), pl.col(SPEC.label).mean().alias("positive_rate")
    )
    context.log.info(
        "Training set: windows %s (scoring %s), %d rows, features version %s",
        windows.train, windows.scoring, df.height, feat_version,
    )
    return dg.MaterializeResult(
        metadata={
            **table_metadata(result, df),
            "features_delta_version": feat_version,
            "raw_delta_version": raw_version,
            "train_windows": ", ".join(windows.train),
            "scoring_window": windows.scoring,
            "time_range": f"{df[order_column(SPEC)].min()} .. {df[order_column(SPEC)].max()}",
            "content_sha256": digest,
            "splits": dg.MetadataValue.md(markdown_table(sizes.sort("split"))),
        },
        data_version=delta_data_version(result, lake.options),
    )


def _raw_version_of(context: dg.AssetExecutionContext, feat_version: int | None) -> int:
    """The raw table version the current features were built from, from the features' metadata."""
    meta = _latest_metadata(context.instance, features.key)
    value = meta.get("raw_delta_version")
    return int(value) if value is not None else -1


def _latest_metadata(instance: dg.DagsterInstance, key: dg.AssetKey) -> dict:
    event = instance.get_latest_materialization_event(key)
    if not event or not event.asset_materialization:
        return {}
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def _splits(lake: Lake, version: int | None = None):
    """The training set at ``version`` (default: the latest), validated, with its splits and
    feature columns."""
    uri = lake.uri("training_set", SPEC.name)
    version = table_version(uri, lake.options) if version is None else version
    df = read_table(uri, version, lake.options)
    feats = feature_columns(SPEC, df.drop("split", strict=False))
    validate_training_set(SPEC, df, feats)
    parts = {name: df.filter(pl.col("split") == name) for name in SPLITS}
    return version, df, parts, feats


def _commit(lake: Lake, version: int) -> dict:
    """The training_set table's commit of ``version``, with the provenance recorded in it."""
    history = open_table(lake.uri("training_set", SPEC.name), lake.options).history()
    return next((h for h in history if h.get("version") == version), {})


def _lineage(lake: Lake, version: int, df: pl.DataFrame) -> dict:
    """Where training set ``version`` came from, from its own Delta commit, after checking that
    the rows read are the rows that were written (the commit's content hash)."""
    uri = lake.uri("training_set", SPEC.name)
    commit = _commit(lake, version)
    recorded = commit.get("content_sha256")
    same, digest = matches_content_hash(df, recorded) if recorded else (True, content_hash(df))
    if not same:
        raise dg.Failure(
            f"{uri} version {version} does not match the content hash recorded when it was "
            f"written ({recorded[:12]} vs {digest[:12]}); nothing was logged or registered."
        )

    def as_int(value):  # -1 and absent both mean "not recorded"
        return int(value) if value not in (None, "") and int(value) >= 0 else None

    return {
        "uri": uri,
        "training_set_delta_version": version,
        "content_sha256": digest,
        "features_delta_version": as_int(commit.get("features_version")),
        "raw_delta_version": as_int(commit.get("raw_version")),
        "train_windows": commit.get("train_windows", ""),
        "scoring_window": commit.get("scoring_window", ""),
        "label": SPEC.label,
        "timestamp": order_column(SPEC),
        "splits": {name: _span(df.filter(pl.col("split") == name)) for name in SPLITS},
    }


def _or_minus_one(version: int | None) -> int:
    """Metadata and tags hold -1 for a version that was not recorded."""
    return -1 if version is None else version


def _span(part: pl.DataFrame) -> dict:
    ts = part[order_column(SPEC)]
    return {"rows": part.height, "from": str(ts.min()), "to": str(ts.max()),
            "positive_rate": float(part[SPEC.label].mean())}


class TuningConfig(dg.Config):
    n_trials: int = Field(default=20, description="Trials in the Optuna study (raise for a wider search).")
    timeout_s: float = Field(default=0, description="Stop the search after this many seconds (0 = no limit).")
    pruning: bool = Field(default=True, description="Stop trials whose validation AUC falls below the median of earlier trials.")
    pruning_startup_trials: int = Field(default=5, description="Trials that always run to the end before pruning starts.")
    pruning_warmup_rounds: int = Field(default=20, description="Boosting rounds a trial always gets before it can be pruned.")


def _storage_for_display(storage: str) -> str:
    """The storage URL without a password (or the journal file's path), fit for metadata and
    MLflow tags."""
    if "://" not in storage:
        return storage
    from sqlalchemy.engine import make_url

    return make_url(storage).render_as_string(hide_password=True)


@dg.asset(group_name="training", kinds={"optuna", "mlflow"}, deps=[training_set],
          code_version=TUNING_CODE)
def hyperparameters(
    context: dg.AssetExecutionContext, config: TuningConfig, lake: Lake, optuna: OptunaStudies,
    mlflow: MlflowTracking,
) -> dg.Output:
    """The best LightGBM parameters found by a seeded Optuna study maximising validation AUC,
    with poor trials pruned on the validation AUC as they train. The study is stored
    persistently and named after the training set's content, so rerunning on the same data
    resumes it instead of starting over. Each search is an MLflow run with the optimisation
    history and the parameter importances as charts."""
    import optuna as op

    version, df, parts, feats = _splits(lake)
    # Named after the content hash the training set's commit recorded (an earlier build's CSV
    # hash on an older table), so that the same data resumes the same study.
    recorded = _commit(lake, version).get("content_sha256")
    digest = matches_content_hash(df, recorded)[1] if recorded else content_hash(df)
    study_name = f"{MODEL_NAME}-{digest[:12]}"
    pruner = (make_pruner(config.pruning_startup_trials, config.pruning_warmup_rounds)
              if config.pruning else op.pruners.NopPruner())

    def progress(study, trial):
        context.log.info("%s/%d: %s", study_name, config.n_trials, trial_outcome(study, trial))

    study = tune(
        parts["train"], parts["valid"], feats, SPEC.label, n_trials=config.n_trials,
        storage=optuna.storage, study_name=study_name, timeout=config.timeout_s or None,
        pruner=pruner, on_trial=progress,
    )
    best = study.best_trial
    params = {**best.params, "bagging_freq": 1}
    states = {s: sum(t.state.name == s for t in study.trials) for s in ("COMPLETE", "PRUNED", "FAIL")}
    importances = param_importances(study)
    trials = pl.DataFrame(
        [(t.number, t.state.name, t.value,
          t.user_attrs.get("pruned_reason") or t.user_attrs.get("failed_reason") or "")
         for t in study.trials],
        schema={"trial": pl.Int64, "state": pl.String, "value": pl.Float64, "reason": pl.String},
        orient="row",
    )
    history_chart = plots.png_bytes(plots.optimisation_history(study.trials))
    importance_chart = plots.png_bytes(plots.param_importances(importances)) if importances else None
    summary = {
        "study_name": study_name, "trials": len(study.trials), "states": states,
        "best_trial": best.number, "best_value": float(best.value), "params": params,
    }
    storage = _storage_for_display(optuna.storage)
    context.log.info(
        "Study %s: %d trials (%d complete, %d pruned, %d failed); best trial %d, valid AUC %.4f",
        study_name, len(study.trials), states["COMPLETE"], states["PRUNED"], states["FAIL"],
        best.number, best.value,
    )

    ml, _ = mlflow.setup()
    with mlflow.start_run(context, run_name=f"tune-{study_name}") as run:
        ml.set_tags({"optuna_study": study_name, "optuna_storage": storage,
                     "training_set_delta_version": str(version)})
        ml.log_params(params)
        ml.log_metrics({"best_valid_auc": float(best.value), "trials": len(study.trials),
                        **{f"trials_{s.lower()}": n for s, n in states.items()}})
        plots.log_png(history_chart, "tuning/optimisation_history.png")
        if importance_chart is not None:
            plots.log_png(importance_chart, "tuning/param_importances.png")
        ml.log_dict({**summary, "importances": importances}, "tuning/summary.json")
        ml.log_text(trials.write_csv(), "tuning/trials.csv")
        run_id, exp_id = run.info.run_id, run.info.experiment_id

    imp_table = pl.DataFrame(
        {"parameter": list(importances), "importance": [float(v) for v in importances.values()]},
        schema={"parameter": pl.String, "importance": pl.Float64},
    )
    return dg.Output(
        params,
        data_version=value_data_version(params),
        metadata={
            "study_name": study_name,
            "storage": storage,
            "trials": len(study.trials),
            "trials_complete": states["COMPLETE"],
            "trials_pruned": states["PRUNED"],
            "trials_failed": states["FAIL"],
            "best_trial": best.number,
            "best_valid_auc": float(best.value),
            "best_params": dg.MetadataValue.json(params),
            "training_set_delta_version": version,
            "mlflow_run_id": run_id,
            "mlflow_run": dg.MetadataValue.url(mlflow.run_url(exp_id, run_id)),
            "trials_table": dg.MetadataValue.md(markdown_table(trials.tail(30))),
            "optimisation_history": dg.MetadataValue.md(
                plots.markdown_image(history_chart, "optimisation history")
            ),
            "param_importances": dg.MetadataValue.md("\n\n".join([
                markdown_table(imp_table),
                *([plots.markdown_image(importance_chart, "parameter importances")]
                  if importance_chart is not None else []),
            ])),
        },
    )


def _signature(df: pl.DataFrame, feats: list[str]):
    """MLflow signature from the feature table's declared types (not guessed from a sample)."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    kinds = {pl.Float64: "double", pl.Float32: "float", pl.Int64: "long", pl.Int32: "integer",
             pl.Int16: "integer", pl.Int8: "integer", pl.UInt8: "integer", pl.UInt16: "integer",
             pl.UInt32: "long", pl.Boolean: "boolean"}
    unknown = {c: str(df.schema[c]) for c in feats if df.schema[c] not in kinds}
    if unknown:
        raise dg.Failure(
            f"No MLflow type for feature column(s) {unknown}; nothing was logged or registered."
        )
    cols = [ColSpec(kinds[df.schema[c]], c) for c in feats]
    return ModelSignature(inputs=Schema(cols), outputs=Schema([ColSpec("double", "probability")]))


def _input_example(train: pl.DataFrame, feats: list[str]):
    """Five complete training rows (rows with missing values would not fit integer columns)."""
    complete = train.select(feats).drop_nulls()
    return (complete if complete.height else train.select(feats)).head(5).to_pandas()


def _log_datasets(ml, lineage: dict, parts: dict[str, pl.DataFrame]) -> None:
    """The training set's splits as MLflow dataset inputs whose source is the Delta table at its
    version. Only the path and version are recorded; nothing is read or downloaded again."""
    from mlflow.data.delta_dataset_source import DeltaDatasetSource

    version = lineage["training_set_delta_version"]
    source = DeltaDatasetSource(path=lineage["uri"], delta_table_version=version)
    contexts = {"train": "training", "valid": "validation", "holdout": "evaluation"}
    for split, part in parts.items():
        dataset = ml.data.from_polars(
            part, source=source, targets=SPEC.label,
            name=f"training_set/{SPEC.name}@v{version}:{split}",
            digest=content_hash(part)[:16],
        )
        ml.log_input(dataset, context=contexts[split], tags={
            "split": split, "delta_version": str(version),
            "features_delta_version": str(_or_minus_one(lineage["features_delta_version"])),
        })


@dg.asset(group_name="training", kinds={"lightgbm", "mlflow"}, code_version=MODEL_CODE)
def model(
    context: dg.AssetExecutionContext, hyperparameters: dict, lake: Lake, mlflow: MlflowTracking
) -> dg.Output:
    """The LightGBM classifier trained with the best parameters on the training set version they
    were tuned on, logged to MLflow as one run (params, per-round validation metrics, feature
    importance, the Delta versions read as dataset inputs, Dagster run, asset and code version as
    tags, a signature from the declared schema and an input example) and registered as a new
    version of the registered model with the alias ``challenger``. A version whose signature
    cannot be read back is deleted and the step fails."""
    import lightgbm as lgb
    from mlflow.entities import Metric

    tuning = _latest_metadata(context.instance, HYPERPARAMETERS_KEY)
    pinned = tuning.get("training_set_delta_version")
    version, df, parts, feats = _splits(lake, pinned)
    lineage = _lineage(lake, version, df)
    record: dict = {}
    booster = train_booster(
        hyperparameters, parts["train"], parts["valid"], feats, SPEC.label, record=record
    )
    best_it = booster.best_iteration
    metrics = {}
    for split in ("valid", "holdout"):
        part = parts[split]
        p = booster.predict(part.select(feats).to_numpy(), num_iteration=best_it)
        scores = binary_metrics(part[SPEC.label].to_numpy(), p)
        metrics.update({f"{split}_{k}": v for k, v in scores.items()})
    bad = {k: v for k, v in metrics.items() if not math.isfinite(v)}
    if bad:
        raise dg.Failure(f"Model metrics are not finite: {bad}; nothing logged or registered.")

    gain = booster.feature_importance("gain")
    importance = pl.DataFrame({"feature": feats, "gain": gain.astype(float)})
    importance = importance.sort("gain", descending=True)
    signature = _signature(parts["train"], feats)
    example = _input_example(parts["train"], feats)
    lineage.update(features=feats, best_iteration=best_it)
    tuning_summary = {
        "study_name": tuning.get("study_name"), "trials": tuning.get("trials"),
        "states": {"COMPLETE": tuning.get("trials_complete"), "PRUNED": tuning.get("trials_pruned"),
                   "FAIL": tuning.get("trials_failed")},
        "best_trial": tuning.get("best_trial"), "best_value": tuning.get("best_valid_auc"),
        "mlflow_run_id": tuning.get("mlflow_run_id"),
    }
    code_version = context.assets_def.code_versions_by_key.get(context.asset_key) or ""

    ml, _ = mlflow.setup()
    with mlflow.start_run(context, run_name=f"{MODEL_NAME}-{context.run.run_id[:8]}") as run:
        ml.log_params({**hyperparameters, "best_iteration": best_it, "features": len(feats)})
        ml.set_tags({
            "training_set_delta_version": str(version), "training_set_sha256": lineage["content_sha256"],
            "features_delta_version": str(_or_minus_one(lineage["features_delta_version"])),
            "raw_delta_version": str(_or_minus_one(lineage["raw_delta_version"])),
            "dagster_code_version": code_version, "optuna_study": str(tuning.get("study_name")),
            "tuning_mlflow_run_id": str(tuning.get("mlflow_run_id")),
        })
        _log_datasets(ml, lineage, parts)
        ml.log_metrics(metrics)
        series = record.get("valid", {})
        history = [Metric(f"valid_{name}", float(v), 0, i)
                   for name, vals in series.items() for i, v in enumerate(vals)]
        for i in range(0, len(history), 900):
            mlflow.client().log_batch(run.info.run_id, metrics=history[i : i + 900])
        ml.log_dict(dict(zip(feats, map(float, gain))), "feature_importance_gain.json")
        ml.log_dict(lineage, "training_set.json")
        ml.log_dict(tuning_summary, "tuning.json")
        info = ml.lightgbm.log_model(
            booster, name="model", signature=signature, input_example=example,
            pip_requirements=[f"lightgbm=={lgb.__version__}"], registered_model_name=MODEL_NAME,
        )
        run_id, exp_id = run.info.run_id, run.info.experiment_id
    client = mlflow.client()
    mv = client.get_model_version(MODEL_NAME, str(info.registered_model_version))
    require_signature(client, MODEL_NAME, mv.version, feats)
    client.set_registered_model_alias(MODEL_NAME, CHALLENGER, mv.version)
    context.log.info(
        "Registered %s version %s (run %s) from training set v%s: valid AUC %.4f, holdout AUC %.4f",
        MODEL_NAME, mv.version, run_id, version, metrics["valid_auc"], metrics["holdout_auc"],
    )
    ref = {
        "name": MODEL_NAME, "version": int(mv.version), "run_id": run_id, "experiment_id": exp_id,
        "uri": f"models:/{MODEL_NAME}/{mv.version}", "training_set_version": version,
        "features": feats, "best_iteration": best_it, "metrics": metrics,
    }
    return dg.Output(
        ref,
        data_version=dg.DataVersion(f"{MODEL_NAME}:v{mv.version}"),
        metadata={
            "model_name": MODEL_NAME,
            "model_version": int(mv.version),
            "mlflow_run_id": run_id,
            "mlflow_run": dg.MetadataValue.url(mlflow.run_url(exp_id, run_id)),
            "mlflow_model": dg.MetadataValue.url(mlflow.model_url(MODEL_NAME, mv.version)),
            "training_set_delta_version": version,
            "features_delta_version": _or_minus_one(lineage["features_delta_version"]),
            "best_iteration": best_it,
            **{k: float(v) for k, v in metrics.items() if k.endswith(("auc", "log_loss", "accuracy"))},
            "feature_importance": dg.MetadataValue.md(markdown_table(importance.head(15))),
        },
    )


class EvaluationConfig(dg.Config):
    threshold: float = Field(default=0.5, description="Probability from which a row is predicted positive.")


def _score(ml, uri: str, feats: list[str], rows: pl.DataFrame):
    """Probabilities of the registered model at ``uri`` for ``rows`` and its booster, or the
    reason it could not score them (recorded, and then rejected by the promotion gate)."""
    missing = [c for c in feats if c not in rows.columns]
    if missing:
        return None, None, f"the window lacks its feature column(s) {missing}"
    try:
        booster = ml.lightgbm.load_model(uri)
        p = booster.predict(rows.select(feats).to_numpy())
    except Exception as e:
        return None, None, f"{uri} could not be loaded or scored: {type(e).__name__}: {e}"
    return p, booster, None


@dg.asset(group_name="training", kinds={"lightgbm", "mlflow"}, code_version=MODEL_CODE)
def evaluation(
    context: dg.AssetExecutionContext, config: EvaluationConfig, model: dict, lake: Lake,
    mlflow: MlflowTracking,
) -> dg.Output:
    """The new model (challenger) and the current champion, both loaded from the registry and
    scored on the same rows: the holdout of the training set the challenger was trained on,
    which is the most recent labelled window before the scoring window. Holds metrics at the
    threshold, a 10-bin calibration table, the confusion matrix and the gain importance, with a
    chart. A model that cannot be loaded or scored is recorded with the reason, for the
    promotion gate to reject."""
    import mlflow as ml

    client = mlflow.client()
    _, _, parts, _ = _splits(lake, model["training_set_version"])
    holdout = parts["holdout"]
    y = holdout[SPEC.label].to_numpy()
    ts = holdout[order_column(SPEC)]
    window = {"start": str(ts.min()), "end": str(ts.max()), "rows": int(len(y)),
              "training_set_version": model["training_set_version"]}

    p, booster, challenger_error = _score(ml, model["uri"], model["features"], holdout)
    challenger = binary_metrics(y, p, config.threshold) if p is not None else None
    champion_version = alias_version(client, model["name"], CHAMPION)
    champion, champion_error = None, None
    if champion_version == model["version"]:
        champion = challenger
    elif champion_version is not None:
        champ = client.get_model_version(model["name"], str(champion_version))
        champ_feats = ml.artifacts.load_dict(f"runs:/{champ.run_id}/training_set.json")["features"]
        champ_uri = f"models:/{model['name']}/{champion_version}"
        champ_p, _, champion_error = _score(ml, champ_uri, champ_feats, holdout)
        champion = binary_metrics(y, champ_p, config.threshold) if champ_p is not None else None

    shown = ("auc", "log_loss", "accuracy", "precision", "recall")
    rows = [("challenger", model["version"], *[challenger[k] if challenger else None for k in shown])]
    if champion_version is not None:
        rows.append(("champion", champion_version, *[champion[k] if champion else None for k in shown]))
    comparison = pl.DataFrame(
        rows, orient="row",
        schema={"role": pl.String, "version": pl.Int64, **{k: pl.Float64 for k in shown}},
    )
    metadata = {
        "holdout_rows": len(y),
        "window": f"{window['start']} .. {window['end']}",
        "threshold": config.threshold,
        "comparison": dg.MetadataValue.md(markdown_table(comparison)),
    }
    if champion_version is not None:
        metadata["champion_version"] = champion_version
    if champion:
        metadata["champion_auc"] = champion["auc"]
    if champion_error:
        metadata["champion_error"] = champion_error
    calibration = None
    if challenger_error:
        context.log.warning("Challenger v%s could not be evaluated: %s", model["version"],
                            challenger_error)
        metadata["challenger_error"] = challenger_error
    else:
        calibration = calibration_table(y, p)
        confusion = confusion_matrix(y, p, config.threshold)
        importance = pl.DataFrame(
            {"feature": booster.feature_name(), "gain": booster.feature_importance("gain").astype(float)}
        ).sort("gain", descending=True)
        title = f"{model['name']} v{model['version']} on {len(y)} holdout rows"
        chart = plots.png_bytes(plots.evaluation(calibration, importance, title))
        plots.log_png(chart, "evaluation/holdout.png", client, model["run_id"])
        client.log_dict(model["run_id"], {"window": window, "threshold": config.threshold,
                                          "challenger": challenger, "champion": champion,
                                          "champion_version": champion_version,
                                          "calibration": calibration.to_dicts(),
                                          "confusion": confusion.to_dicts()}, "evaluation/metrics.json")
        metadata.update({
            **{k: challenger[k] for k in shown},
            "calibration": dg.MetadataValue.md(markdown_table(calibration)),
            "confusion_matrix": dg.MetadataValue.md(markdown_table(confusion)),
            "feature_importance": dg.MetadataValue.md(markdown_table(importance.head(15))),
            "chart": dg.MetadataValue.md(
                plots.markdown_image(chart, "calibration and feature importance")
            ),
        })
    context.log.info("Holdout %s (%d rows): %s", metadata["window"], len(y), comparison.to_dicts())
    out = {
        "challenger": challenger, "challenger_error": challenger_error,
        "champion": champion, "champion_error": champion_error, "champion_version": champion_version,
        "holdout_rows": len(y), "window": window, "threshold": config.threshold,
        "calibration": calibration.to_dicts() if calibration is not None else None,
        "model": model,
    }
    return dg.Output(out, metadata=metadata, data_version=value_data_version(out))

