"""Training-set splits, Optuna tuning and LightGBM training: plain functions, no Dagster.

Rows are autocorrelated in time, so every split is by time, never at random. The training set
covers the windows before the one being scored, less an embargo: a row whose label lies inside
the scoring window is left out, because that label was not known when scoring began.
"""

import hashlib
import logging
import math
from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
import polars as pl

from mlops_assets.datasets import DatasetSpec

log = logging.getLogger(__name__)

SEED = 42

# Fixed LightGBM settings: deterministic on one thread, quiet.
BASE_PARAMS = {
    "objective": "binary",
    "metric": ["auc", "binary_logloss"],
    "verbosity": -1,
    "seed": SEED,
    "deterministic": True,
    "num_threads": 1,
    "force_row_wise": True,
}


@dataclass(frozen=True)
class Windows:
    train: list[str]
    scoring: str


def choose_windows(available: list[str], train_windows: int, scoring: str | None = None) -> Windows:
    """The scoring window (the latest, unless given) and the ``train_windows`` windows before it."""
    ordered = sorted(set(available))
    scoring = scoring or ordered[-1]
    if scoring not in ordered:
        raise ValueError(f"Scoring window {scoring!r} has no data; windows present: {ordered}")
    before = [w for w in ordered if w < scoring]
    if not before:
        raise ValueError(
            f"No data before the scoring window {scoring!r} to train on; ingest earlier windows first."
        )
    return Windows(train=before[-train_windows:], scoring=scoring)


def split_training_set(
    spec: DatasetSpec, features: pl.DataFrame, windows: Windows,
    valid_share: float = 0.15, holdout_share: float = 0.15,
) -> pl.DataFrame:
    """Labelled rows of the training windows with a ``split`` column: train, valid, holdout by time."""
    scoring_start = features.filter(pl.col("window") == windows.scoring)[spec.timestamp].min()
    df = features.filter(
        pl.col("window").is_in(windows.train)
        & pl.col(spec.label).is_not_null()
        & (pl.col("label_at") < scoring_start)
    ).sort(spec.timestamp)
    if df.height < 100:
        raise ValueError(f"Only {df.height} labelled rows in windows {windows.train}; need at least 100.")
    n = df.height
    n_hold, n_valid = int(n * holdout_share), int(n * valid_share)
    n_train = n - n_hold - n_valid
    split = np.array(["train"] * n_train + ["valid"] * n_valid + ["holdout"] * n_hold)
    return df.with_columns(pl.Series("split", split))


def content_hash(df: pl.DataFrame) -> str:
    """sha256 of a frame's column names, types and values in row order (as CSV text, which is
    stable across library versions), to verify a rebuilt training set."""
    digest = hashlib.sha256(",".join(f"{k}:{v}" for k, v in df.schema.items()).encode())
    digest.update(df.write_csv(float_precision=None).encode())
    return digest.hexdigest()


def _dataset(df: pl.DataFrame, features: list[str], label: str, reference=None) -> lgb.Dataset:
    return lgb.Dataset(
        df.select(features).to_numpy(), label=df[label].to_numpy(),
        feature_name=features, reference=reference, free_raw_data=False,
    )


def train_booster(
    params: dict, train: pl.DataFrame, valid: pl.DataFrame, features: list[str], label: str,
    max_rounds: int = 1000, early_stopping: int = 50, record: dict | None = None,
) -> lgb.Booster:
    """Train with early stopping on ``valid``; ``record`` collects the per-round metrics."""
    dtrain = _dataset(train, features, label)
    dvalid = _dataset(valid, features, label, reference=dtrain)
    callbacks = [lgb.early_stopping(early_stopping, verbose=False), lgb.log_evaluation(0)]
    if record is not None:
        callbacks.append(lgb.record_evaluation(record))
    return lgb.train(
        {**BASE_PARAMS, **params}, dtrain, num_boost_round=max_rounds,
        valid_sets=[dvalid], valid_names=["valid"], callbacks=callbacks,
    )


def binary_metrics(y_true: np.ndarray, p: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """AUC, log loss, accuracy, precision and recall of probabilities ``p``."""
    from sklearn.metrics import accuracy_score, log_loss, precision_score, recall_score, roc_auc_score

    pred = (p >= threshold).astype(int)
    both = len(np.unique(y_true)) == 2
    return {
        "auc": float(roc_auc_score(y_true, p)) if both else float("nan"),
        "log_loss": float(log_loss(y_true, np.clip(p, 1e-15, 1 - 1e-15), labels=[0, 1])),
        "accuracy": float(accuracy_score(y_true, pred)),
        "precision": float(precision_score(y_true, pred, zero_division=0)),
        "recall": float(recall_score(y_true, pred, zero_division=0)),
        "positive_rate": float(np.mean(y_true)),
        "rows": float(len(y_true)),
    }


def search_space(trial) -> dict:
    return {
        "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.2, log=True),
        "num_leaves": trial.suggest_int("num_leaves", 7, 63, log=True),
        "min_data_in_leaf": trial.suggest_int("min_data_in_leaf", 10, 200, log=True),
        "feature_fraction": trial.suggest_float("feature_fraction", 0.5, 1.0),
        "bagging_fraction": trial.suggest_float("bagging_fraction", 0.5, 1.0),
        "bagging_freq": 1,
        "lambda_l2": trial.suggest_float("lambda_l2", 1e-3, 10.0, log=True),
    }


def tune(
    train: pl.DataFrame, valid: pl.DataFrame, features: list[str], label: str, *,
    n_trials: int, storage: str, study_name: str, timeout: float | None = None, seed: int = SEED,
    on_trial=None,
):
    """Run (or resume) a seeded Optuna study maximising validation AUC; returns the study."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=study_name, storage=storage, direction="maximize", load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=seed),
    )
    y_valid = valid[label].to_numpy()

    def objective(trial):
        params = search_space(trial)
        booster = train_booster(params, train, valid, features, label, max_rounds=500, early_stopping=30)
        p = booster.predict(valid.select(features).to_numpy(), num_iteration=booster.best_iteration)
        auc = binary_metrics(y_valid, p)["auc"]
        trial.set_user_attr("best_iteration", int(booster.best_iteration))
        if not math.isfinite(auc):
            raise optuna.TrialPruned(f"validation AUC is not finite ({auc})")
        return auc

    remaining = n_trials - len([t for t in study.trials if t.state.is_finished()])
    if remaining > 0:
        study.optimize(objective, n_trials=remaining, timeout=timeout, callbacks=[on_trial] if on_trial else None)
    return study
