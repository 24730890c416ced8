"""Registry: the promotion gate, which model version holds the ``champion`` alias, and why.

The decision is made once, by the blocking check ``evaluation:promotion_gate``:

* passed: the challenger may take the alias (no champion yet, or better by the margin);
* failed with severity WARN: the champion stays. A normal outcome, so the rest of the graph
  (scoring with the current champion) goes on;
* failed with severity ERROR: the challenger is unusable (its artifact does not load or score
  its input example, or its metric is not finite). The check blocks ``champion`` and everything
  after it, so the alias cannot move, and records the rejection itself.

``champion`` then acts on the gate's verdict for the very evaluation it reads, and appends each
decision to the ``registry/promotions`` Delta table.
"""

import json
import os
from datetime import datetime, timezone

import dagster as dg
import polars as pl
from pydantic import Field

from mlops_assets import modelcard
from mlops_assets.datasets import current_spec
from mlops_assets.defs.training import MODEL_NAME, evaluation
from mlops_assets.registry import CHAMPION, RegistryError, alias_version, decide, smoke_test
from mlops_assets.resources import Lake, MlflowTracking, ReportStore
from mlops_assets.tables import write_table
from mlops_assets.versions import code_version_for

SPEC = current_spec()
PROMOTION_GATE = "promotion_gate"
GATE_KEY = dg.AssetCheckKey(evaluation.key, PROMOTION_GATE)

PROMOTIONS_SCHEMA = {
    "decided_at": pl.Datetime("us", "UTC"),
    "model_name": pl.String,
    "challenger_version": pl.Int64,
    "challenger_run_id": pl.String,
    "champion_version_before": pl.Int64,
    "champion_version_after": pl.Int64,
    "metric": pl.String,
    "challenger_value": pl.Float64,
    "champion_value": pl.Float64,
    "margin": pl.Float64,
    "improvement": pl.Float64,
    "decision": pl.String,
    "reason": pl.String,
    "gate": pl.String,
    "window_start": pl.String,
    "window_end": pl.String,
    "window_rows": pl.Int64,
    "challenger_metrics": pl.String,
    "champion_metrics": pl.String,
    "dagster_run_id": pl.String,
}


class PromotionConfig(dg.Config):
    metric: str = Field(default="auc", description="Evaluation metric the gate compares: auc, log_loss, accuracy, precision or recall.")
    margin: float = Field(default=0.0, description="How much better (in the metric's units) the challenger must be to take over.")


def _record(lake: Lake, run_id: str, ev: dict, *, decision: str, reason: str, gate: str,
            after: int | None, metric: str | None, margin: float | None,
            improvement: float | None) -> None:
    """Append one decision to ``registry/promotions`` (append-only: never rewritten)."""
    model, window = ev["model"], ev["window"]
    new, old = ev["challenger"] or {}, ev["champion"] or {}
    row = {
        "decided_at": datetime.now(timezone.utc),
        "model_name": model["name"],
        "challenger_version": model["version"],
        "challenger_run_id": model["run_id"],
        "champion_version_before": ev["champion_version"],
        "champion_version_after": after,
        "metric": metric,
        "challenger_value": new.get(metric),
        "champion_value": old.get(metric),
        "margin": margin,
        "improvement": improvement,
        "decision": decision,
        "reason": reason,
        "gate": gate,
        "window_start": window["start"],
        "window_end": window["end"],
        "window_rows": window["rows"],
        "challenger_metrics": json.dumps(new, sort_keys=True),
        "champion_metrics": json.dumps(old, sort_keys=True),
        "dagster_run_id": run_id,
    }
    frame = pl.DataFrame([row], schema=PROMOTIONS_SCHEMA)
    write_table(lake.uri("registry", "promotions"), frame, mode="append", evolve_schema=True,
                storage_options=lake.options)


@dg.asset_check(
    asset=evaluation, name=PROMOTION_GATE, blocking=True,
    description="The challenger may take the champion alias: it loads from the registry and scores "
                "its input example, and it beats the champion on the same rows by the margin.",
)
def promotion_gate(
    context: dg.AssetCheckExecutionContext, config: PromotionConfig, evaluation: dict, lake: Lake,
    mlflow: MlflowTracking,
) -> dg.AssetCheckResult:
    """Passes when the challenger should become champion. Fails with WARN when the champion
    stays, and with ERROR, blocking ``champion``, when the challenger is unusable."""
    mlflow.setup()
    model = evaluation["model"]
    try:
        smoke = smoke_test(model["name"], model["version"])
        smoke_error = None
    except RegistryError as e:
        smoke, smoke_error = {}, str(e)
    decision = decide(
        metric=config.metric, margin=config.margin, challenger_version=model["version"],
        challenger=evaluation["challenger"], champion_version=evaluation["champion_version"],
        champion=evaluation["champion"],
        challenger_error=smoke_error or evaluation["challenger_error"],
        champion_error=evaluation["champion_error"],
    )
    context.log.info("Promotion gate for %s v%s: %s (%s)", model["name"], model["version"],
                     decision.verdict, decision.reason)
    if decision.verdict == "reject":
        _record(lake, context.run.run_id, evaluation, decision="rejected", reason=decision.reason,
                gate="failed (error)", after=evaluation["champion_version"], metric=config.metric,
                margin=config.margin, improvement=None)
    metadata = {
        "verdict": decision.verdict,
        "reason": decision.reason,
        "metric": config.metric,
        "margin": config.margin,
        "challenger_version": model["version"],
        "smoke_test": dg.MetadataValue.json(smoke or {"error": smoke_error}),
    }
    if evaluation["champion_version"] is not None:
        metadata["champion_version"] = evaluation["champion_version"]
    for role in ("challenger", "champion"):
        value = (evaluation[role] or {}).get(config.metric)
        if value is not None:
            metadata[f"{role}_{config.metric}"] = value
    if decision.improvement is not None:
        metadata["improvement"] = decision.improvement
    return dg.AssetCheckResult(
        passed=decision.verdict == "promote",
        severity=(dg.AssetCheckSeverity.ERROR if decision.verdict == "reject"
                  else dg.AssetCheckSeverity.WARN),
        metadata=metadata,
    )


def _gate_verdict(instance: dg.DagsterInstance) -> dict | None:
    """The gate's result for the latest evaluation (the one ``champion`` reads), or None when the
    gate has not evaluated that materialization."""
    record = instance.get_latest_asset_check_evaluation_record(GATE_KEY)
    latest = instance.fetch_materializations(evaluation.key, limit=1).records
    if record is None or record.event is None or not latest:
        return None
    result = record.event.asset_check_evaluation
    target = result.target_materialization_data
    if result is None or target is None or target.storage_id != latest[0].storage_id:
        return None
    return {"passed": result.passed, **{k: v.value for k, v in result.metadata.items()}}


def _upstream_checks(context: dg.AssetExecutionContext) -> list[tuple[str, str]]:
    """The latest outcome of every check on the assets upstream of this one, for the model card.
    A run of a few assets (a retrain) has a job graph with only their checks, so the graph it
    was cut from is used."""
    graph = context.job_def.asset_layer.asset_graph
    graph = getattr(graph, "source_asset_graph", graph)
    seen, todo = set(), [context.asset_key]
    while todo:
        key = todo.pop()
        if key in seen or not graph.has(key):
            continue
        seen.add(key)
        todo.extend(graph.get(key).parent_keys)
    outcomes = []
    for check_key in sorted(graph.asset_check_keys, key=lambda k: k.to_user_string()):
        if check_key.asset_key not in seen:
            continue
        record = context.instance.get_latest_asset_check_evaluation_record(check_key)
        result = record.event.asset_check_evaluation if record and record.event else None
        if result is None:
            outcome = "not evaluated"
        elif result.passed:
            outcome = "passed"
        else:
            outcome = f"failed ({result.severity.value.lower()})"
        outcomes.append((check_key.to_user_string(), outcome))
    return outcomes


def dagster_ui_url() -> str:
    """Base URL of the Dagster UI for links in model cards (``make ui`` serves this one)."""
    return os.environ.get("MLOPS_DAGSTER_UI_URL", "http://127.0.0.1:3000")


def _model_card(context, mlflow: MlflowTracking, ev: dict, decision: str, reason: str) -> str:
    """The challenger's model card, from what its MLflow run and the evaluation recorded."""
    import mlflow as ml

    model, window = ev["model"], ev["window"]
    run = mlflow.client().get_run(model["run_id"])
    lineage = ml.artifacts.load_dict(f"runs:/{model['run_id']}/training_set.json")
    try:
        tuning = ml.artifacts.load_dict(f"runs:/{model['run_id']}/tuning.json")
    except Exception:  # runs logged before tuning.json existed
        tuning = {}
    signature = ml.models.get_model_info(model["uri"]).signature
    schema = [(c["name"], c["type"]) for c in signature.inputs.to_dict()]
    params = {k: v for k, v in run.data.params.items() if k not in ("features", "best_iteration")}
    shown = ("auc", "log_loss", "accuracy", "precision", "recall")
    rows = [("challenger", model["version"], *[(ev["challenger"] or {}).get(k) for k in shown])]
    if ev["champion_version"] is not None and ev["champion_version"] != model["version"]:
        old = ev["champion"] or {}
        rows.append(("champion", ev["champion_version"], *[old.get(k) for k in shown]))
    comparison = pl.DataFrame(
        rows, orient="row",
        schema={"role": pl.String, "version": pl.Int64, **{k: pl.Float64 for k in shown}},
    )
    splits = lineage.get("splits", {})
    train, valid = splits.get("train", {}), splits.get("valid", {})
    limits = [
        f"Trained on data from {train.get('from')} to {valid.get('to')} (train and validation); "
        "behaviour outside that period, e.g. in another season or market regime, is unmeasured.",
        f"Evaluated on the latest labelled rows before the scoring window "
        f"({window['start']} .. {window['end']}, {window['rows']} rows), not on the scoring window, "
        f"whose labels arrive {SPEC.horizon.total_seconds() / 3600:g} hours after each prediction.",
        f"Positive rate in training {train.get('positive_rate', float('nan')):.3f}; see the "
        "evaluation's calibration table before reading scores as probabilities elsewhere.",
        f"Scores are for {SPEC.name} rows built by this platform's feature code; the signature "
        "lists the exact columns and types.",
    ]
    facts = modelcard.CardFacts(
        name=model["name"], version=model["version"], run_id=model["run_id"], decision=decision,
        reason=reason, dataset=SPEC.description, lineage=lineage, schema=schema, tuning=tuning,
        params=params, comparison=comparison, window=window, checks=_upstream_checks(context),
        limits=limits, training_dagster_run_id=run.data.tags.get("dagster_run_id"),
        dagster_ui_url=dagster_ui_url(),
        mlflow_run_url=mlflow.run_url(run.info.experiment_id, model["run_id"]),
    )
    return modelcard.render(facts)


@dg.asset(group_name="registry", kinds={"mlflow", "delta"},
          code_version=code_version_for(__name__, "mlops_assets.registry", "mlops_assets.modelcard"))
def champion(
    context: dg.AssetExecutionContext, evaluation: dict, lake: Lake, mlflow: MlflowTracking,
    reports: ReportStore,
) -> dg.Output:
    """The model version that serves predictions. The challenger takes the ``champion`` alias
    only when the promotion gate passed on the evaluation read here and the champion is still
    the one it was compared with; otherwise the champion stays. Every decision is appended to
    the ``registry/promotions`` Delta table, and the challenger gets a model card (in this
    asset's metadata, as ``model_card.md`` in its MLflow run, and under the reports folder)."""
    model = evaluation["model"]
    client = mlflow.client()
    gate = _gate_verdict(context.instance)
    before = evaluation["champion_version"]
    if gate is None:
        promote, reason = False, (f"the promotion gate has not evaluated this evaluation; run the "
                                  f"{PROMOTION_GATE} check to decide")
    else:
        promote, reason = gate["passed"], gate["reason"]
    now = alias_version(client, MODEL_NAME, CHAMPION)
    if promote and now != before:
        # Another promotion landed since the evaluation: the comparison no longer holds.
        promote, reason = False, (f"the champion moved from v{before} to v{now} after this "
                                  f"evaluation; evaluate again against v{now}")
    if promote:
        client.set_registered_model_alias(MODEL_NAME, CHAMPION, str(model["version"]))
    current = alias_version(client, MODEL_NAME, CHAMPION)
    decision = "promoted" if promote else "kept champion"
    context.log.info("Promotion of %s v%s: %s (%s)", MODEL_NAME, model["version"], decision, reason)
    if gate is None:
        gate_outcome = "not evaluated"
    else:
        gate_outcome = "passed" if gate["passed"] else "failed (warn)"
    _record(lake, context.run.run_id, evaluation, decision=decision, reason=reason, gate=gate_outcome,
            after=current, metric=(gate or {}).get("metric"), margin=(gate or {}).get("margin"),
            improvement=(gate or {}).get("improvement"))
    if current is None:
        raise dg.Failure(
            f"{MODEL_NAME} has no champion: no version has passed the promotion gate yet. {reason}"
        )

    card = _model_card(context, mlflow, evaluation, decision, reason)
    client.log_text(model["run_id"], card, "model_card.md")
    card_path = reports.path("model_cards", f"{MODEL_NAME}_v{model['version']}.md")
    card_path.write_text(card)
    mv = client.get_model_version(MODEL_NAME, str(current))
    return dg.Output(
        {"name": MODEL_NAME, "version": current, "run_id": mv.run_id},
        # the version holding the alias: predictions stay fresh while the champion does
        data_version=dg.DataVersion(f"{MODEL_NAME}:v{current}"),
        metadata={
            "champion_version": current,
            "challenger_version": model["version"],
            "decision": decision,
            "reason": reason,
            "mlflow_model": dg.MetadataValue.url(mlflow.model_url(MODEL_NAME, current)),
            "model_card": dg.MetadataValue.md(card),
            "model_card_path": dg.MetadataValue.path(str(card_path)),
        },
    )

