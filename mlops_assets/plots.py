"""Small PNG charts for Dagster metadata and MLflow artifacts: plain matplotlib, no Dagster.

Figures are built with matplotlib's object API (``Figure``), not ``pyplot``, so no GUI backend
or global figure state is involved and charts can be drawn from any thread.
"""

import base64
import io
import math

import polars as pl
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

MAX_INLINE_BYTES = 300_000
"""Larger PNGs are not inlined into Dagster metadata (the event log would grow with each run)."""


def png_bytes(fig: Figure, dpi: int = 80) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def markdown_image(chart: Figure | bytes, alt: str, link: str | None = None) -> str:
    """The chart (a figure or its PNG) as a markdown image with the PNG inlined as a data URI,
    which the Dagster UI renders in an asset's metadata. A chart too large to inline becomes a
    link instead."""
    data = chart if isinstance(chart, bytes) else png_bytes(chart)
    if len(data) > MAX_INLINE_BYTES:
        return f"[{alt}]({link})" if link else f"({alt}: {len(data)} bytes, not inlined)"
    return f"![{alt}](data:image/png;base64,{base64.b64encode(data).decode()})"


def log_png(data: bytes, artifact_file: str, client=None, run_id: str | None = None) -> None:
    """Log a rendered PNG as the MLflow artifact ``artifact_file``: to ``run_id`` through
    ``client`` if given, else to the active run. (``log_figure`` would render the figure again.)"""
    import tempfile
    from pathlib import PurePosixPath

    import mlflow

    path = PurePosixPath(artifact_file)
    folder = str(path.parent) if str(path.parent) != "." else None
    with tempfile.TemporaryDirectory() as tmp:
        local = f"{tmp}/{path.name}"
        with open(local, "wb") as f:
            f.write(data)
        if client is None:
            mlflow.log_artifact(local, folder)
        else:
            client.log_artifact(run_id, local, folder)


def optimisation_history(trials: list) -> Figure:
    """Value of each trial by number, pruned trials at their last reported value, and the best
    value so far. ``trials`` are Optuna FrozenTrials."""
    fig = Figure(figsize=(6, 3.2), layout="constrained")
    ax = fig.subplots()
    done = [(t.number, t.value) for t in trials if t.state.name == "COMPLETE"]
    pruned = []
    for t in trials:
        if t.state.name == "PRUNED" and t.intermediate_values:
            last = t.intermediate_values[max(t.intermediate_values)]
            if math.isfinite(last):
                pruned.append((t.number, last))
    if done:
        ax.scatter(*zip(*done), s=18, color="tab:blue", label="complete")
        best, steps = -math.inf, []
        for number, value in sorted(done):
            best = max(best, value)
            steps.append((number, best))
        ax.step(*zip(*steps), where="post", color="tab:red", label="best so far")
    if pruned:
        ax.scatter(*zip(*pruned), s=18, marker="x", color="grey", label="pruned (last report)")
    failed = sum(1 for t in trials if t.state.name == "FAIL")
    ax.set_title(f"Optimisation history ({len(trials)} trials, {failed} failed)", fontsize=10)
    ax.set_xlabel("trial")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("validation AUC")
    if done or pruned:
        ax.legend(fontsize=8, loc="lower right")
    return fig


def param_importances(importances: dict[str, float]) -> Figure:
    """Horizontal bars of each parameter's importance for the objective."""
    fig = Figure(figsize=(6, 0.4 * max(len(importances), 2) + 1), layout="constrained")
    ax = fig.subplots()
    names = list(importances)[::-1]
    ax.barh(names, [importances[n] for n in names], color="tab:blue")
    ax.set_title("Parameter importances (fANOVA)", fontsize=10)
    ax.set_xlabel("share of the objective's variance")
    return fig


def evaluation(
    calibration: pl.DataFrame, importance: pl.DataFrame, title: str, top: int = 15
) -> Figure:
    """Reliability diagram (observed positive rate by predicted-probability bin) next to the
    features with the most total gain."""
    fig = Figure(figsize=(10, 4), layout="constrained")
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.3]})
    filled = calibration.drop_nulls("mean_predicted")
    left.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfect")
    left.plot(filled["mean_predicted"], filled["observed_rate"], marker="o", color="tab:blue",
              label="model")
    left.set_xlim(0, 1)
    left.set_ylim(0, 1)
    left.set_xlabel("mean predicted probability")
    left.set_ylabel("observed positive rate")
    left.set_title("Calibration (10 bins)", fontsize=10)
    left.legend(fontsize=8, loc="upper left")
    head = importance.head(top).reverse()
    right.barh(head["feature"].to_list(), head["gain"].to_list(), color="tab:green")
    right.set_title(f"Feature importance (gain, top {min(top, importance.height)})", fontsize=10)
    right.tick_params(axis="y", labelsize=7)
    fig.suptitle(title, fontsize=11)
    return fig
