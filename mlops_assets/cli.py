"""``mlops-assets``: run the main job and summarise what it produced.

Heavy libraries (MLflow, Evidently, LightGBM) are imported only by the commands that need them.
"""

import argparse
import functools
import os
import sys


# What the definitions' resources and the instance are built from (``settings``, ``resources``).
# Variables read while a run or a sensor tick executes (e.g. the retrain cooldown) are left out,
# and so is MLOPS_DATASET: the asset modules fix their dataset when first imported.
_SETTINGS = ("MLOPS_HOME", "DAGSTER_HOME", "MLOPS_DELTA_ROOT", "MLOPS_DUCKDB_PATH",
             "MLOPS_OPTUNA_STORAGE", "MLOPS_MLFLOW_TRACKING_URI", "MLOPS_MLFLOW_ARTIFACTS",
             "MLOPS_MLFLOW_EXPERIMENT", "MLOPS_MLFLOW_UI_URL", "MLOPS_DBT_TARGET_PATH", "MLOPS_EXECUTOR")


def _settings_key() -> tuple:
    return tuple(os.environ.get(name) for name in _SETTINGS)


@functools.cache
def _cached_definitions(_key: tuple):
    from mlops_assets.definitions import defs as load

    return load()


@functools.cache
def _cached_instance(_dagster_home: str | None):
    import dagster as dg

    return dg.DagsterInstance.get()


def defs():
    """The code location's definitions, loaded once per process for the same stores (each load
    scans ``defs/`` again: about a second). The dataset is fixed for the process."""
    return _cached_definitions(_settings_key())


def instance():
    """The Dagster instance of ``DAGSTER_HOME``, opened once per process."""
    return _cached_instance(os.environ.get("DAGSTER_HOME"))


def _materialize(selection, tags=None, run_config=None):
    job = defs().resolve_implicit_global_asset_job_def()
    # Show the assets' own log lines (tuning progress, rows written), not every engine event.
    run_config = {**(run_config or {}), "loggers": {"console": {"config": {"log_level": "INFO"}}}}
    result = job.execute_in_process(
        instance=instance(), asset_selection=selection, tags=tags or {}, run_config=run_config,
        raise_on_error=False,
    )
    if not result.success:
        lines = []
        for event in result.all_events:
            if event.is_step_failure:
                error = event.step_failure_data.error
                while error.cause is not None:  # the user's exception, not Dagster's wrapper
                    error = error.cause
                lines.append(f"  step {event.step_key}: {error.message.strip()}")
        raise SystemExit(f"Run {result.run_id} failed:\n" + "\n".join(lines))
    return result


def demo(args) -> int:
    """Ingest the windows up to ``--through``, then materialize the whole graph once."""
    import dagster as dg

    from mlops_assets.defs.ingestion import RAW_KEY, windows
    from mlops_assets.settings import prepare_environment
    from mlops_assets.summary import print_summary

    h = prepare_environment()
    first = windows.get_first_partition_key()
    last = f"{args.through}-01"
    if last not in windows.get_partition_keys():
        raise SystemExit(f"--through {args.through}: no such window (from {first[:7]} to 1998-12)")
    if last == first:
        raise SystemExit(f"--through {args.through}: the model needs at least one earlier window to train on; use {windows.get_partition_keys()[1][:7]} or later.")
    print(f"mlops_assets demo: home {h.root}")
    _rewind(args.through)
    print(f"1/2 ingesting windows {first[:7]} .. {args.through} of Elec2 into Delta")
    ingest = _materialize(
        [RAW_KEY],
        tags={"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last},
    )
    print(f"    run {ingest.run_id} succeeded")
    print("2/2 transform (dbt), features, training set, tuning, model, evaluation, champion, predictions, drift")
    rest = dg.AssetSelection.all() - dg.AssetSelection.assets(RAW_KEY)

    keys = list(rest.resolve(defs().resolve_asset_graph()))
    run_config = {"ops": {"hyperparameters": {"config": {"n_trials": args.trials}},
                          "training_set": {"config": {"scoring_window": args.through}}}}
    result = _materialize(keys, run_config=run_config)
    print(f"    run {result.run_id} succeeded\n")
    print_summary(instance())
    if args.replay_through and args.replay_through != "none":
        _replay(args, last)
    return 0


def _rewind(through: str) -> None:
    """Start the story again on a home that holds later windows from an earlier demo: remove
    the raw rows after ``through`` in one new Delta version (earlier versions keep them)."""
    from mlops_assets.datasets import current_spec
    from mlops_assets.settings import home
    from mlops_assets.tables import delete_rows

    uri = "/".join([home().delta_root, "raw", current_spec().name])
    result = delete_rows(uri, f"window > '{through}'", commit_metadata={"reason": f"demo rewind to {through}"})
    if result.committed:
        print(f"    this home held windows after {through} from an earlier demo: removed their "
              f"{result.rows} raw rows in Delta version {result.version} (earlier versions keep them)")


def _replay(args, last: str) -> None:
    """Replay the months after the first training through the sensors, then print a timeline."""
    import os

    import dagster as dg

    from mlops_assets.defs.ingestion import windows
    from mlops_assets.defs.sensors import landing_dir
    from mlops_assets.replay import HEADER, Loop, replay, timeline_means
    from mlops_assets.settings import home
    from mlops_assets.sources import fetch_elec2

    # A replay compresses months into minutes, so the wall-clock cooldown and daily cap that
    # protect a live deployment would block every retrain after the first: lift them here.
    os.environ["MLOPS_RETRAIN_COOLDOWN_MINUTES"] = "0"
    os.environ["MLOPS_RETRAIN_DAILY_CAP"] = "1000"
    keys = [k for k in windows.get_partition_keys() if last < k <= f"{args.replay_through}-01"]
    months = [k[:7] for k in keys]
    if not months:
        print(f"\nNothing to replay: --replay-through {args.replay_through} is not after {last[:7]}.")
        return
    print(f"\nReplaying {len(months)} months ({months[0]} .. {months[-1]}) through the sensors:")
    print("each lands in the landing folder, is ingested, scored and monitored; a failing drift or")
    print("performance check makes the retrain sensor retrain, and the gate decides the champion.\n")
    print(HEADER)
    loop = Loop(instance(), defs(),
                run_config={"ops": {"hyperparameters": {"config": {"n_trials": args.trials}}}})
    log_path = home().root / "logs" / "replay.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    steps = replay(loop, months, fetch_elec2(home().downloads_dir), landing_dir(), log_path=log_path)
    retrains = sum(s.retrained for s in steps)
    for line in timeline_means(steps):
        print(line)
    print(f"\n{retrains} retrain(s) over {len(steps)} months. The timeline is in the Dagster UI too:")
    print("sensor ticks under Automation, runs tagged mlops/trigger=landing or retrain, and the")
    print(f"monitoring/performance and monitoring/drift Delta tables. Run output: {log_path}")


def run(args) -> int:
    """Materialize the whole graph for the configured dataset (``MLOPS_DATASET``): every window
    of its source (every batch file, for data without time), then everything downstream."""
    import dagster as dg

    from mlops_assets.datasets import current_spec
    from mlops_assets.defs.ingestion import RAW_KEY, windows
    from mlops_assets.settings import home, prepare_environment
    from mlops_assets.sources import batches

    h = prepare_environment()
    spec = current_spec()
    store = instance()
    if isinstance(windows, dg.DynamicPartitionsDefinition):
        found = list(batches(spec, h.downloads_dir))
        new = [b for b in found if not store.has_dynamic_partition(windows.name, b)]
        if new:
            store.add_dynamic_partitions(windows.name, new)
        keys = windows.get_partition_keys(dynamic_partitions_store=store)
    else:
        keys = windows.get_partition_keys()
    if args.windows:
        keys = [k for k in keys if any(k.startswith(w) for w in args.windows.split(","))]
    if not keys:
        raise SystemExit(f"No windows to ingest for dataset {spec.name!r}.")
    print(f"{spec.name}: ingesting {len(keys)} window(s) {keys[0]} .. {keys[-1]} into {h.delta_root}")
    _materialize([RAW_KEY], tags={"dagster/asset_partition_range_start": keys[0],
                                  "dagster/asset_partition_range_end": keys[-1]})
    graph = defs().resolve_asset_graph()
    rest = [k for k in graph.materializable_asset_keys if k != RAW_KEY]
    result = _materialize(rest, run_config={"ops": {"hyperparameters": {"config": {"n_trials": args.trials}}}})
    print(f"run {result.run_id} succeeded\n")
    from mlops_assets.summary import print_summary

    print_summary(instance())
    return 0


def summary(args) -> int:
    from mlops_assets.settings import prepare_environment
    from mlops_assets.summary import print_summary

    prepare_environment()
    print_summary()
    return 0


def _print_json(value) -> None:
    import json

    print(json.dumps(value, indent=2, sort_keys=True, default=str))


def trace(args) -> int:
    """One prediction back to its model, training set, tables, source files, code and runs.
    Reads Delta tables only: no MLflow, LightGBM or Dagster import on this path."""
    from mlops_assets.audit import AuditError, format_trace, format_training_trace, trace_training
    from mlops_assets.audit import trace as trace_prediction

    if (args.prediction_id is None) == (args.model_version is None):
        raise SystemExit("trace: give a prediction id, or --model-version N for the training data "
                         "of a model version")
    try:
        if args.model_version is not None:
            result, fmt = trace_training(args.model_version), format_training_trace
        else:
            result, fmt = trace_prediction(args.prediction_id), format_trace
    except AuditError as e:
        raise SystemExit(str(e)) from e
    _print_json(result) if args.json else print(fmt(result))
    return 0


def promotions(args) -> int:
    """The promotion decisions of the ``registry/promotions`` Delta table, oldest first."""
    from mlops_assets.audit import AuditError, model_name
    from mlops_assets.audit import promotions as read_promotions
    from mlops_assets.datasets import current_spec

    try:
        table = read_promotions(model_name(current_spec()), args.model_version)
    except AuditError as e:
        raise SystemExit(str(e)) from e
    if args.json:
        _print_json(table.to_dicts())
        return 0
    print(f"{'decided at (UTC)':26} {'challenger':>10} {'before':>6} {'after':>6}  decision  reason")
    for row in table.iter_rows(named=True):
        def v(x):
            return "-" if x is None else f"v{x}"
        print(f"{row['decided_at']:%Y-%m-%d %H:%M:%S.%f}"[:26].ljust(26),
              f"{v(row['challenger_version']):>10} {v(row['champion_version_before']):>6} "
              f"{v(row['champion_version_after']):>6}  {row['decision']}: {row['reason']}")
    return 0


def models(args) -> int:
    """Registered model versions, optionally only those trained on the given Delta versions."""
    from mlops_assets.audit import models_trained_on

    found = models_trained_on(features_version=args.features_version,
                              training_set_version=args.training_set_version,
                              raw_version=args.raw_version, model_version=args.version)
    if args.json:
        _print_json(found)
        return 0
    if not found:
        print("No registered model version matches.")
        return 0
    print(f"{'model':24} {'version':>7} {'features':>8} {'train set':>9} {'raw':>4}  "
          f"{'sha256':12}  aliases  MLflow run")
    for m in found:
        print(f"{m['model_name']:24} {m['model_version']:>7} {m['features_version']!s:>8} "
              f"{m['training_set_version']!s:>9} {m['raw_version']!s:>4}  "
              f"{(m['training_set_sha256'] or '-')[:12]:12}  {','.join(m['aliases']) or '-':7}  "
              f"{m['mlflow_run_id']}")
    return 0


def reproduce(args) -> int:
    """Rebuild a model version's training set by time travel, verify it, retrain, compare."""
    from mlops_assets.audit import AuditError, format_reproduce
    from mlops_assets.audit import reproduce as reproduce_model

    try:
        result = reproduce_model(args.version, retrain=not args.no_retrain)
    except AuditError as e:
        raise SystemExit(f"Cannot reproduce version {args.version}: {e}") from e
    _print_json(result) if args.json else print(format_reproduce(result))
    return 0


def vacuum(args) -> int:
    """Remove old Delta files and log entries per the retention settings, keeping every version
    a registered model needs unless --force."""
    from mlops_assets.retention import RetentionPolicy, format_report, vacuum_all

    policy = RetentionPolicy.from_env()
    reports = vacuum_all(policy, force=args.force, dry_run=args.dry_run)
    _print_json([r.as_dict() for r in reports]) if args.json else print(format_report(policy, reports))
    return 0


def _version(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    import logging
    import warnings

    # The product's own progress lines (data fetched, rows written) on stderr; library noise off.
    ours = logging.getLogger("mlops_assets")
    if not ours.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        ours.addHandler(handler)
    ours.setLevel(logging.INFO)
    ours.propagate = False
    warnings.filterwarnings("ignore", module="dagster")
    warnings.filterwarnings("ignore", category=UserWarning, module="pydantic")
    parser = argparse.ArgumentParser(prog="mlops-assets", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="run the main job on Elec2 and print a summary")
    p.add_argument("--through", default="1996-08", help="last window to ingest (YYYY-MM); it is the one scored")
    p.add_argument("--trials", type=_positive, default=20, help="Optuna trials")
    p.add_argument("--replay-through", default="1998-12", help="after the first training, replay the months up to this one (YYYY-MM) through the sensors; 'none' skips the replay")
    p.set_defaults(func=demo)
    p = sub.add_parser("run", help="materialize the whole graph for the dataset named by MLOPS_DATASET")
    p.add_argument("--windows", default="", help="comma-separated window prefixes to ingest (default: all)")
    p.add_argument("--trials", type=_positive, default=20, help="Optuna trials")
    p.set_defaults(func=run)
    p = sub.add_parser("summary", help="print what the home holds: tables, model, champion, drift")
    p.set_defaults(func=summary)
    p = sub.add_parser("trace", help="one prediction (or, with --model-version, a model's training data) back to its model, training set, tables, source files, code and runs")
    p.add_argument("prediction_id", nargs="?", default=None,
                   help="a prediction id from the predictions table, e.g. 1998-12.21.51cfc1711cdada19")
    p.add_argument("--model-version", type=_positive, default=None,
                   help="instead of a prediction: the training data of this registered model version")
    p.add_argument("--json", action="store_true", help="print JSON for machines")
    p.set_defaults(func=trace)
    p = sub.add_parser("promotions", help="the promotion history (registry/promotions)")
    p.add_argument("--model-version", type=_version, default=None, help="only decisions involving this version")
    p.add_argument("--json", action="store_true", help="print JSON for machines")
    p.set_defaults(func=promotions)
    p = sub.add_parser("models", help="registered model versions and the Delta versions they were trained on")
    p.add_argument("--features-version", type=_version, default=None, help="only models trained on this features table version")
    p.add_argument("--training-set-version", type=_version, default=None, help="only models trained on this training_set table version")
    p.add_argument("--raw-version", type=_version, default=None, help="only models trained on this raw table version")
    p.add_argument("--version", type=_positive, default=None, help="only this registered model version")
    p.add_argument("--json", action="store_true", help="print JSON for machines")
    p.set_defaults(func=models)
    p = sub.add_parser("reproduce", help="rebuild a model version's training set, verify its hash, retrain and compare")
    p.add_argument("version", type=_positive, help="registered model version")
    p.add_argument("--no-retrain", action="store_true", help="only rebuild and verify the training set")
    p.add_argument("--json", action="store_true", help="print JSON for machines")
    p.set_defaults(func=reproduce)
    p = sub.add_parser("vacuum", help="remove old Delta files and log entries per the retention settings (MLOPS_DELTA_VACUUM_RETENTION_HOURS, MLOPS_DELTA_LOG_RETENTION_DAYS)")
    p.add_argument("--force", action="store_true", help="also remove files that registered model versions still need")
    p.add_argument("--dry-run", action="store_true", help="list what would be removed, remove nothing")
    p.add_argument("--json", action="store_true", help="print JSON for machines")
    p.set_defaults(func=vacuum)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:  # the reader went away (`... | head`): nothing more to say
        sys.stdout = open(os.devnull, "w")
        return 0


if __name__ == "__main__":
    sys.exit(main())
