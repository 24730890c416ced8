"""A short account of what the platform holds, for the end of a demo or a curious person."""

import dagster as dg
import polars as pl

from mlops_assets.datasets import current_spec
from mlops_assets.settings import home
from mlops_assets.tables import open_table


def _latest_meta(instance: dg.DagsterInstance, key: dg.AssetKey) -> dict:
    event = instance.get_latest_materialization_event(key)
    if not event or not event.asset_materialization:
        return {}
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def print_summary(instance: dg.DagsterInstance | None = None) -> None:
    spec = current_spec()
    h = home()
    instance = instance or dg.DagsterInstance.get()
    tables = [
        ("raw", spec.name), ("features", spec.name), ("training_set", spec.name),
        ("predictions", spec.name), ("monitoring", "drift"), ("registry", "promotions"),
    ]
    print("Delta tables")
    print(f"  {'table':28} {'rows':>8} {'version':>8}")
    for parts in tables:
        uri = "/".join([h.delta_root, *parts])
        table = open_table(uri)
        if table is None:
            print(f"  {'/'.join(parts):28} {'-':>8} {'-':>8}")
            continue
        rows = pl.scan_delta(table).select(pl.len()).collect().item()
        print(f"  {'/'.join(parts):28} {rows:>8} {table.version():>8}")

    model = _latest_meta(instance, dg.AssetKey("model"))
    champ = _latest_meta(instance, dg.AssetKey("champion"))
    drift = _latest_meta(instance, dg.AssetKey("drift_report"))
    preds = _latest_meta(instance, dg.AssetKey("predictions"))
    if model:
        print(f"\nModel {model['model_name']} version {model['model_version']} (MLflow run {model['mlflow_run_id']})")
        print(f"  valid AUC {model['valid_auc']:.3f} | holdout AUC {model['holdout_auc']:.3f}"
              f" | holdout log loss {model['holdout_log_loss']:.3f} | holdout accuracy {model['holdout_accuracy']:.3f}")
    tuning = _latest_meta(instance, dg.AssetKey("hyperparameters"))
    if tuning:
        print(f"  tuning: {tuning.get('trials', '?')} trials in study {tuning.get('study_name', '?')} "
              f"({tuning.get('trials_complete', '?')} complete, {tuning.get('trials_pruned', 0)} pruned, "
              f"{tuning.get('trials_failed', 0)} failed), best valid AUC {tuning.get('best_valid_auc', float('nan')):.3f}")
    if champ:
        print(f"  champion: version {champ['champion_version']} ({champ['decision']}: {champ['reason']})")
        if champ.get("model_card_path"):
            print(f"  model card: {champ['model_card_path']}")
    if preds:
        print(f"\nPredictions for window {preds['window']} by version {preds['model_version']}: "
              f"{preds['rows_written']} rows, mean score {preds['mean_score']:.3f}")
    if drift:
        print(f"Drift of window {drift['window']} vs training data: {drift['verdict']} "
              f"({drift['drifted_columns']}/{drift['tested_columns']} columns, share {drift['drift_share']:.2f})")
        print(f"  report: {drift['report']}")
    print("\nWhere to look next")
    print("  Dagster UI:  make ui          -> http://127.0.0.1:3000")
    print("  MLflow UI:   make mlflow-ui   -> http://127.0.0.1:5000")
    print(f"  Reports:     {h.reports_dir}")
    print(f"  Delta root:  {h.delta_root}")
