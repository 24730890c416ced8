"""Registry: which model version holds the ``champion`` alias, and why."""

from datetime import datetime, timezone

import dagster as dg
import polars as pl
from pydantic import Field

from mlops_assets.defs.training import MODEL_NAME
from mlops_assets.resources import Lake, MlflowTracking
from mlops_assets.tables import write_table


class PromotionConfig(dg.Config):
    metric: str = Field(default="auc", description="Holdout metric the decision compares (higher is better).")
    margin: float = Field(default=0.0, description="How much better the challenger must be to take over.")


@dg.asset(group_name="registry", kinds={"mlflow", "delta"}, code_version="1")
def champion(
    context: dg.AssetExecutionContext, config: PromotionConfig, evaluation: dict, lake: Lake, mlflow: MlflowTracking
) -> dg.Output:
    """The model version that serves predictions. The new model takes the ``champion`` alias when
    there is no champion yet or when it beats the champion on the same holdout rows by the
    configured margin; otherwise the champion stays. Every decision is appended to the
    ``promotions`` Delta table."""
    model = evaluation["model"]
    new = evaluation["challenger"][config.metric]
    old_version = evaluation["champion_version"]
    old = evaluation["champion"][config.metric] if evaluation["champion"] else None
    if old_version is None:
        promote, reason = True, "no champion yet"
    elif old is None:
        promote, reason = True, f"champion v{old_version} cannot score the current features"
    elif old_version == model["version"]:
        promote, reason = False, "already champion"
    else:
        promote = new > old + config.margin
        reason = f"{config.metric} {new:.4f} vs champion {old:.4f} (margin {config.margin})"
    client = mlflow.client()
    if promote:
        client.set_registered_model_alias(MODEL_NAME, "champion", str(model["version"]))
    current = int(client.get_model_version_by_alias(MODEL_NAME, "champion").version)
    decision = "promoted" if promote else "kept champion"
    context.log.info("Promotion of %s v%s: %s (%s)", MODEL_NAME, model["version"], decision, reason)

    record = pl.DataFrame(
        {
            "decided_at": [datetime.now(timezone.utc)],
            "model_name": [MODEL_NAME],
            "challenger_version": [model["version"]],
            "champion_version_before": [old_version],
            "champion_version_after": [current],
            "metric": [config.metric],
            "challenger_value": [float(new)],
            "champion_value": [None if old is None else float(old)],
            "margin": [config.margin],
            "decision": [decision],
            "reason": [reason],
            "dagster_run_id": [context.run.run_id],
        },
        schema_overrides={"champion_version_before": pl.Int64, "champion_value": pl.Float64,
                          "decided_at": pl.Datetime("us", "UTC")},
    )
    write_table(lake.uri("registry", "promotions"), record, mode="append", storage_options=lake.options)
    mv = client.get_model_version(MODEL_NAME, str(current))
    return dg.Output(
        {"name": MODEL_NAME, "version": current, "run_id": mv.run_id},
        metadata={
            "champion_version": current,
            "challenger_version": model["version"],
            "decision": decision,
            "reason": reason,
            "mlflow_model": dg.MetadataValue.url(mlflow.model_url(MODEL_NAME, current)),
        },
    )
