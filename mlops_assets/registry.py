"""The MLflow model registry: what a registered version must satisfy, and the promotion rule.

Plain functions, no Dagster. The Dagster side (``defs/registry.py``) runs the rule as a blocking
asset check and moves the ``champion`` alias.
"""

import math
import tempfile
from dataclasses import dataclass

import numpy as np

from mlops_assets.training import HIGHER_IS_BETTER

CHAMPION = "champion"
CHALLENGER = "challenger"


class RegistryError(RuntimeError):
    """A registered model version that must not be used."""


def alias_version(client, name: str, alias: str) -> int | None:
    """The version holding ``alias``, or None when the alias or the registered model is absent."""
    from mlflow.exceptions import MlflowException

    try:
        registered = client.get_registered_model(name)
    except MlflowException as e:
        if e.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    version = registered.aliases.get(alias)
    return None if version is None else int(version)


def require_signature(client, name: str, version: int | str, features: list[str]):
    """The version's signature, read back from the registry. A version without one, or whose
    inputs are not exactly ``features`` in order, is deleted and refused: a version that cannot
    say what it expects must not exist, let alone be served."""
    import mlflow

    signature = mlflow.models.get_model_info(f"models:/{name}/{version}").signature
    if signature is None or signature.inputs is None:
        problem = "has no input signature"
    elif signature.inputs.input_names() != features:
        problem = (f"has signature inputs {signature.inputs.input_names()}, which differ from the "
                   f"features it was trained on {features}")
    else:
        return signature
    client.delete_model_version(name, str(version))
    raise RegistryError(f"{name} version {version} {problem}; the version was deleted.")


def smoke_test(name: str, version: int | str) -> dict:
    """Load ``models:/<name>/<version>`` the way it will be served (pyfunc) and score its logged
    input example: the probabilities must be finite, within [0, 1], one per example row.
    Returns what was checked; raises :class:`RegistryError` naming the step that failed, so a
    corrupt or incomplete artifact is caught before the version serves anything."""
    import mlflow
    from mlflow.models import Model

    uri = f"models:/{name}/{version}"
    step = "downloading the artifacts"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp)
            step = "reading MLmodel"
            meta = Model.load(local)
            if meta.signature is None:
                raise RegistryError("the model has no signature")
            step = "reading the input example"
            example = meta.load_input_example(local)
            if example is None or len(example) == 0:
                raise RegistryError("the model has no input example")
            step = "loading the model"
            loaded = mlflow.pyfunc.load_model(local)
            step = "scoring the input example"
            scores = np.asarray(loaded.predict(example), dtype=float).ravel()
    except Exception as e:
        raise RegistryError(
            f"{uri} failed its smoke test while {step}: {type(e).__name__}: {e}"
        ) from e
    if len(scores) != len(example):
        raise RegistryError(f"{uri} returned {len(scores)} scores for {len(example)} example rows")
    if not (np.isfinite(scores).all() and ((scores >= 0) & (scores <= 1)).all()):
        raise RegistryError(f"{uri} returned scores that are not probabilities: {scores.tolist()}")
    return {"uri": uri, "example_rows": len(example), "scores": [round(float(s), 6) for s in scores]}


@dataclass(frozen=True)
class Decision:
    """What the promotion gate concluded about a challenger."""

    verdict: str
    """``promote``: take the champion alias; ``keep``: the champion stays (a normal outcome);
    ``reject``: the challenger is unusable, so nothing downstream should proceed."""
    reason: str
    improvement: float | None = None
    """Challenger minus champion on the metric, signed so that positive is better."""


def decide(
    *, metric: str, margin: float, challenger_version: int, challenger: dict | None,
    champion_version: int | None, champion: dict | None,
    challenger_error: str | None = None, champion_error: str | None = None,
) -> Decision:
    """The promotion rule. Both models' metrics come from the same rows (the evaluation window).

    The challenger is rejected when it could not be scored or its metric is not finite. Without
    a champion, or with one that cannot score the window, it is promoted. Otherwise it is
    promoted only when it beats the champion on ``metric`` by more than ``margin``.
    """
    if metric not in HIGHER_IS_BETTER:
        raise ValueError(
            f"Unknown promotion metric {metric!r}; choose one of {sorted(HIGHER_IS_BETTER)}"
        )
    if challenger_error or challenger is None:
        return Decision(
            "reject", f"challenger v{challenger_version} could not be scored: {challenger_error}"
        )
    new = challenger.get(metric)
    if new is None or not math.isfinite(new):
        return Decision("reject", f"challenger v{challenger_version} has a non-finite {metric} ({new})")
    if champion_version is None:
        return Decision("promote", "no champion yet")
    if champion_version == challenger_version:
        return Decision("keep", f"v{challenger_version} is already the champion")
    old = None if champion is None else champion.get(metric)
    if old is None or not math.isfinite(old):
        why = champion_error or f"its {metric} is {old}"
        return Decision(
            "promote", f"champion v{champion_version} cannot be scored on this window ({why})"
        )
    improvement = (new - old) if HIGHER_IS_BETTER[metric] else (old - new)
    better = improvement > margin
    reason = (
        f"{metric} {new:.4f} vs champion v{champion_version} {old:.4f}: improvement "
        f"{improvement:+.4f} {'>' if better else '<='} margin {margin:g}"
    )
    return Decision("promote" if better else "keep", reason, improvement)
