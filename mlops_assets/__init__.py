"""mlops_assets: the ML lifecycle as Dagster software-defined assets."""

__version__ = "0.1.0"
