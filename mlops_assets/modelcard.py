"""Model cards: one markdown page per registered model version, written from its lineage.

Plain functions, no Dagster or MLflow: the caller gathers the facts (from the MLflow run's
lineage artifacts, the evaluation and the Dagster check records) and this module only renders
them, so a card never states anything that was not recorded.
"""

from dataclasses import dataclass, field

import polars as pl

from mlops_assets.tables import markdown_table


@dataclass(frozen=True)
class CardFacts:
    name: str
    version: int
    run_id: str
    decision: str
    reason: str
    dataset: str
    """What the data is (the dataset declaration's description)."""
    lineage: dict
    """The model's ``training_set.json``: table URI, Delta versions, hash, windows, time ranges."""
    schema: list[tuple[str, str]]
    """Input columns and their types, from the registered signature."""
    tuning: dict
    """The model's ``tuning.json``: study, trial counts by state, best trial and value."""
    params: dict
    comparison: pl.DataFrame
    """One row per role (challenger, champion) with the evaluation metrics on the same rows."""
    window: dict
    """The evaluation window: start, end, rows."""
    checks: list[tuple[str, str]] = field(default_factory=list)
    """(check, outcome) for the promotion gate and the checks on the data upstream."""
    limits: list[str] = field(default_factory=list)
    training_dagster_run_id: str | None = None
    """The Dagster run that built the training set and trained the model."""
    dagster_ui_url: str = "http://127.0.0.1:3000"
    mlflow_run_url: str | None = None


def render(facts: CardFacts) -> str:
    lin, tun = facts.lineage, facts.tuning
    splits = pl.DataFrame(
        [(s, r["rows"], r["from"], r["to"], r["positive_rate"])
         for s, r in lin.get("splits", {}).items()],
        schema=["split", "rows", "from", "to", "positive_rate"], orient="row",
    )
    schema = pl.DataFrame(facts.schema, schema=["column", "type"], orient="row")
    params = pl.DataFrame(
        [(k, str(v)) for k, v in sorted(facts.params.items())],
        schema=["parameter", "value"], orient="row",
    )
    checks = pl.DataFrame(facts.checks, schema=["check", "outcome"], orient="row")
    counts = tun.get("states", {})
    lines = [
        f"# Model card: {facts.name} version {facts.version}",
        "",
        f"**Promotion decision:** {facts.decision} ({facts.reason})  ",
        f"**MLflow run:** `{facts.run_id}`",
        "",
        "## Data",
        facts.dataset,
        "",
        f"- Training set: `{lin.get('uri')}` at Delta version {lin.get('training_set_delta_version')} "
        f"(sha256 `{str(lin.get('content_sha256', ''))[:16]}…`)",
        f"- Built from features Delta version {_known(lin.get('features_delta_version'))}, "
        f"raw Delta version {_known(lin.get('raw_delta_version'))}",
        f"- Windows trained on: {lin.get('train_windows') or 'not recorded'}; "
        f"scoring window: {lin.get('scoring_window') or 'not recorded'}",
        "",
        markdown_table(splits),
        "",
        "## Schema",
        f"{schema.height} input columns, label `{lin.get('label')}` (1 = positive), "
        "output: probability of the positive class.",
        "",
        markdown_table(schema),
        "",
        "## Tuning",
        f"Optuna study `{tun.get('study_name')}`: {tun.get('trials')} trials "
        f"({counts.get('COMPLETE', 0)} complete, {counts.get('PRUNED', 0)} pruned, "
        f"{counts.get('FAIL', 0)} failed); best trial {tun.get('best_trial')} with validation AUC "
        f"{_num(tun.get('best_value'))}. Trained for {lin.get('best_iteration')} rounds with:",
        "",
        markdown_table(params),
        "",
        "## Metrics against the champion",
        f"Same rows for both: {facts.window.get('rows')} labelled rows from "
        f"{facts.window.get('start')} to {facts.window.get('end')}.",
        "",
        markdown_table(facts.comparison),
        "",
        "## Checks",
        markdown_table(checks) if checks.height else "No check results were recorded.",
        "",
        "## Known limits",
        *[f"- {limit}" for limit in facts.limits],
        "",
        *audit_section(facts),
    ]
    return "\n".join(lines)


def audit_section(facts: CardFacts) -> list[str]:
    """Where the training data's trace is, and the commands that answer for this version."""
    lin, v = facts.lineage, facts.version
    ts_version = lin.get("training_set_delta_version")
    ui = facts.dagster_ui_url.rstrip("/")
    run = facts.training_dagster_run_id
    lines = [
        "## Trace and reproduce",
        "The training data of this version, traced back to its source files (training set, "
        "features and raw Delta versions, source file sha256, the code and Dagster run of each "
        "step):",
        "",
        f"    mlops-assets trace --model-version {v}",
        "",
        f"- What this version was trained on: `mlops-assets models --version {v}`",
    ]
    if ts_version is not None:
        lines.append(f"- Every model trained on the same training set: "
                     f"`mlops-assets models --training-set-version {ts_version}`")
    if lin.get("features_delta_version") is not None:
        lines.append(f"- Every model trained on the same features: "
                     f"`mlops-assets models --features-version {lin['features_delta_version']}`")
    lines += [
        f"- Rebuild the training set by time travel, check its sha256 and retrain: "
        f"`mlops-assets reproduce {v}`",
        f"- Read the training set as it was: `polars.read_delta(\"{lin.get('uri')}\", "
        f"version={ts_version})`",
        f"- Promotion history of this version: `mlops-assets promotions --model-version {v}`",
    ]
    if run:
        lines.append(f"- Dagster run that built the training set and trained the model: "
                     f"[{run}]({ui}/runs/{run})")
    lines.append(f"- Dagster asset pages: [training_set]({ui}/assets/training_set), "
                 f"[model]({ui}/assets/model), [features]({ui}/assets/features)")
    if facts.mlflow_run_url:
        lines.append(f"- MLflow run: [{facts.run_id}]({facts.mlflow_run_url})")
    lines.append("")
    return lines


def _num(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _known(value) -> str:
    return "not recorded" if value is None else str(value)
