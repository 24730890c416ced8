"""How old the raw data and the model may get before Dagster marks them failing.

Dagster's freshness daemon (running under ``dagster dev``) evaluates these; a failing model is
retrained by the ``retrain_on_failed_checks`` sensor. Ages are set in hours by environment.
"""

import os
from datetime import timedelta

import dagster as dg


def _hours(name: str, default: float) -> timedelta:
    return timedelta(hours=float(os.environ.get(name, default)))


RAW_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=_hours("MLOPS_RAW_MAX_AGE_HOURS", 48))
MODEL_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=_hours("MLOPS_MODEL_MAX_AGE_HOURS", 24 * 7))
