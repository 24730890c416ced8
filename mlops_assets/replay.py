"""Replaying Elec2 month by month through the closed loop, as the demo does.

Each month lands as a CSV in the landing folder. The ``landing_files`` sensor is ticked against
the real Dagster instance and its run is executed (ingest, transform, score, monitor); then the
``retrain_on_failed_checks`` sensor is ticked and its run, if any, executed. Runs carry the
sensor's name and run key exactly as the sensor daemon would tag them, so a later
``dagster dev`` sees them as already launched. Sensors run in this process instead of the daemon
only to replay 30 months in minutes.
"""

from dataclasses import dataclass

import dagster as dg
import polars as pl
from dagster._core.storage.tags import RUN_KEY_TAG, SENSOR_NAME_TAG

from mlops_assets.datasets import ELEC2, current_spec


@dataclass
class Step:
    window: str
    drift_share: float | None
    drifted: bool | None
    champion_version: int | None
    champion_auc: float | None
    retrained: bool
    reason: str
    champion_after: int | None
    static_auc: float | None = None
    """AUC the first model would have had on this window had it never been replaced."""


def _meta(result: dg.ExecuteInProcessResult, key: str) -> dict:
    """Metadata of ``key``'s materialization in one run."""
    for event in result.get_asset_materialization_events():
        if event.asset_key == dg.AssetKey.from_user_string(key):
            return {k: v.value for k, v in event.materialization.metadata.items()}
    return {}


class Loop:
    """Ticks the platform's sensors in this process and executes what they request."""

    def __init__(self, instance: dg.DagsterInstance, definitions: dg.Definitions, run_config=None):
        self.instance = instance
        self.defs = definitions
        self.cursors: dict[str, str | None] = {}
        self.run_config = run_config or {}

    def redeliver(self, path, window: str) -> dg.ExecuteInProcessResult:
        """Run the landing sensor's job for ``path`` without a run key (a deliberate re-run)."""
        sensor = self.defs.resolve_sensor_def("landing_files")
        job = self.defs.resolve_job_def(sensor.job_name)
        raw_op = "raw__" + current_spec().name
        ops = {raw_op: {"config": {"source_path": str(path)}}}
        return job.execute_in_process(
            instance=self.instance, partition_key=f"{window}-01",
            run_config={"ops": ops, "loggers": {"console": {"config": {"log_level": "WARNING"}}}},
            tags={"mlops/trigger": "replay", "mlops/source_file": path.name}, raise_on_error=False,
        )

    def tick(self, name: str) -> list[dg.ExecuteInProcessResult]:
        sensor = self.defs.resolve_sensor_def(name)
        context = dg.build_sensor_context(
            instance=self.instance, cursor=self.cursors.get(name), definitions=self.defs, sensor_name=name
        )
        data = sensor.evaluate_tick(context)
        self.cursors[name] = data.cursor
        results = []
        for request in data.run_requests:
            existing = self.instance.get_runs(filters=dg.RunsFilter(tags={RUN_KEY_TAG: request.run_key}))
            if any(r.tags.get(SENSOR_NAME_TAG) == name for r in existing):
                continue  # what the daemon does with a run key it has seen
            job = self.defs.resolve_job_def(sensor.job_name)  # the job the daemon would launch
            selection = set(request.asset_selection or job.asset_layer.executable_asset_keys)
            config = request.run_config or {}
            ops = {**self.run_config.get("ops", {}), **config.get("ops", {})}
            ops = {k: v for k, v in ops.items() if dg.AssetKey.from_user_string(k.replace("__", "/")) in selection}
            result = job.execute_in_process(
                instance=self.instance, partition_key=request.partition_key,
                asset_selection=list(request.asset_selection) if request.asset_selection else None,
                run_config={"ops": ops, "loggers": {"console": {"config": {"log_level": "WARNING"}}}},
                tags={**request.tags, RUN_KEY_TAG: request.run_key, SENSOR_NAME_TAG: name},
                raise_on_error=False,
            )
            results.append(result)
        return results


def write_landing_file(source_csv, window: str, folder) -> "object":
    """The rows of one month of the source, in the source's own columns plus ``ts``."""
    spec = ELEC2
    from mlops_assets.sources import read_source

    rows = read_source(spec, source_csv).filter(pl.col("window") == window)
    back = {v: k for k, v in spec.rename.items()}
    out = rows.select(
        pl.col(spec.timestamp).dt.strftime("%Y-%m-%dT%H:%M:%SZ").alias(spec.timestamp),
        *[pl.col(c).alias(back[c]) for c in (*spec.numeric, spec.target)],
    )
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{spec.name}_{window}.csv"
    tmp = path.with_suffix(".tmp")
    out.write_csv(tmp)
    tmp.replace(path)  # appear whole, never half-written
    return path


def replay(loop: Loop, windows: list[str], source_csv, landing, echo=print, log_path=None) -> list[Step]:
    """Replay ``windows`` in order; the runs' own output goes to ``log_path`` (if given)."""
    import contextlib
    import logging

    # The timeline is the output; each run's own lines go to the log file and the Dagster UI.
    for name in ("mlflow", "mlops_assets", "dagster"):
        logging.getLogger(name).setLevel(logging.WARNING)
    steps = []
    sink = open(log_path, "a") if log_path else None
    try:
        for window in windows:
            with contextlib.ExitStack() as quiet:
                if sink:  # MLflow and the sensors' loggers write to stderr
                    quiet.enter_context(contextlib.redirect_stdout(sink))
                    quiet.enter_context(contextlib.redirect_stderr(sink))
                step = _replay_window(loop, window, source_csv, landing)
            steps.append(step)
            echo(format_step(step))
    finally:
        if sink:
            sink.close()
    return steps


def _replay_window(loop: Loop, window: str, source_csv, landing) -> Step:
    path = write_landing_file(source_csv, window, landing)
    scored = loop.tick("landing_files")
    if not scored:
        # This file landed in an earlier replay, so the sensor rightly asks for nothing: deliver
        # it again directly (the window is replaced, not duplicated).
        scored = [loop.redeliver(path, window)]
    failed = [r for r in scored if not r.success]
    if failed:
        raise SystemExit(f"Scoring run {failed[0].run_id} for {window} failed; see it in the Dagster UI.")
    drift = _meta(scored[-1], "drift_report") if scored else {}
    perf = _meta(scored[-1], "model_performance") if scored else {}
    retrains = loop.tick("retrain_on_failed_checks")
    reason = ""
    if retrains:
        if not retrains[0].success:
            raise SystemExit(f"Retrain run {retrains[0].run_id} failed; see it in the Dagster UI.")
        run = loop.instance.get_run_by_id(retrains[0].run_id)
        reason = run.tags.get("mlops/reason", "")
    champ = _current_champion()
    return Step(
        window=window,
        drift_share=drift.get("drift_share"),
        drifted=None if not drift else drift.get("verdict") == "DRIFT",
        champion_version=perf.get("model_version"),
        champion_auc=perf.get("auc") if perf.get("window") == window else None,
        retrained=bool(retrains),
        reason=reason,
        champion_after=champ,
        static_auc=_static_auc(window),
    )


_FIRST_MODEL: dict = {}


def _static_auc(window: str) -> float | None:
    """AUC of version 1 (the model before any retrain) on the labelled rows of ``window``."""
    import mlflow
    from sklearn.metrics import roc_auc_score

    from mlops_assets.defs.training import MODEL_NAME
    from mlops_assets.settings import home
    from mlops_assets.tables import read_table

    spec = current_spec()
    if not _FIRST_MODEL:
        uri = home().mlflow_tracking_uri
        mlflow.set_tracking_uri(uri)
        client = mlflow.MlflowClient(uri, uri)
        run_id = client.get_model_version(MODEL_NAME, "1").run_id
        _FIRST_MODEL["features"] = mlflow.artifacts.load_dict(f"runs:/{run_id}/training_set.json")["features"]
        _FIRST_MODEL["booster"] = mlflow.lightgbm.load_model(f"models:/{MODEL_NAME}/1")
    feats = read_table("/".join([home().delta_root, "features", spec.name]))
    rows = feats.filter((pl.col("window") == window) & pl.col(spec.label).is_not_null())
    y = rows[spec.label].to_numpy()
    if rows.height < 10 or len(set(y.tolist())) < 2:
        return None
    p = _FIRST_MODEL["booster"].predict(rows.select(_FIRST_MODEL["features"]).to_numpy())
    return float(roc_auc_score(y, p))


def _current_champion() -> int | None:
    from mlflow import MlflowClient

    from mlops_assets.defs.training import MODEL_NAME
    from mlops_assets.settings import home

    uri = home().mlflow_tracking_uri
    try:
        return int(MlflowClient(uri, uri).get_model_version_by_alias(MODEL_NAME, "champion").version)
    except Exception:
        return None


HEADER = (f"{'window':8} {'drift share':>11} {'verdict':>8} {'champion':>8} {'AUC':>6} "
          f"{'v1 never retrained':>18} {'retrain':>7} {'champion after':>14}  reason")


def format_step(s: Step) -> str:
    share = f"{s.drift_share:.2f}" if s.drift_share is not None else "-"
    verdict = "-" if s.drifted is None else ("DRIFT" if s.drifted else "ok")
    auc = f"{s.champion_auc:.3f}" if s.champion_auc is not None else "-"
    static = f"{s.static_auc:.3f}" if s.static_auc is not None else "-"
    champion = f"v{s.champion_version}" if s.champion_version else "-"
    after = f"v{s.champion_after}" if s.champion_after else "-"
    return (f"{s.window:8} {share:>11} {verdict:>8} {champion:>8} {auc:>6} {static:>18} "
            f"{'yes' if s.retrained else 'no':>7} {after:>14}  {s.reason}")


def _months(n: int, kind: str = "") -> str:
    return f"{n} {kind}month{'' if n == 1 else 's'}"


def timeline_means(steps) -> list[str]:
    """Mean AUC of the champion in charge and of the first model never retrained, over all
    labelled months and split at the first drifting month: the decay and the recovery in two
    figures each."""
    both = [s for s in steps if s.champion_auc is not None and s.static_auc is not None]
    if not both:
        return []

    def means(part) -> str:
        ours = sum(s.champion_auc for s in part) / len(part)
        static = sum(s.static_auc for s in part) / len(part)
        return f"champion in charge {ours:.3f}, first model never retrained {static:.3f}"

    lines = [f"\nMean AUC over {_months(len(both), 'labelled ')}: {means(both)}."]
    first = next((s.window for s in steps if s.drifted), None)
    before = [s for s in both if first is None or s.window < first]
    after = [s for s in both if first is not None and s.window >= first]
    if before and after:
        lines.append(f"  before the first drift ({_months(len(before))}, to {before[-1].window}): {means(before)}")
        lines.append(f"  from the first drift ({_months(len(after))}, {first} on): {means(after)}")
    return lines
