"""Resources and executor for every asset in this code location."""

import os

import dagster as dg

from mlops_assets.resources import default_resources


@dg.definitions
def runtime() -> dg.Definitions:
    # One process is much faster than one subprocess per step on small machines; set
    # MLOPS_EXECUTOR=multiprocess (or swap in a Celery/Dask/k8s executor) to fan out.
    executor = dg.multiprocess_executor if os.environ.get("MLOPS_EXECUTOR") == "multiprocess" else dg.in_process_executor
    return dg.Definitions(resources=default_resources(), executor=executor)
