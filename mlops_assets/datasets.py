"""Dataset declarations: what a table means to the platform.

A dataset is declared, not coded. The declaration names the source file, the target, the time
column, how far ahead the label lies (the prediction horizon) and which columns are features.
Ingestion, validation, features, training, drift and scoring all follow from it.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta


@dataclass(frozen=True)
class DatasetSpec:
    """The declaration of one dataset."""

    name: str
    """Short snake_case name; the raw table is ``raw/<name>``."""
    target: str
    """Binary label column (0/1) after renaming."""
    timestamp: str
    """Time column after renaming; rows are ordered by it and windows cut from it."""
    numeric: tuple[str, ...]
    """Numeric input columns after renaming."""
    categorical: tuple[str, ...] = ()
    """Categorical input columns after renaming."""
    rename: dict[str, str] = field(default_factory=dict)
    """Source column name -> platform column name."""
    horizon: timedelta = timedelta(0)
    """How far ahead the label lies. The label for time t is the target at t + horizon, so it
    arrives ``horizon`` after the prediction is made."""
    step: timedelta | None = None
    """Spacing of a regular time series (lags and rolling windows are counted in steps)."""
    start: datetime | None = None
    """First timestamp, for sources without a time column whose rows are evenly spaced."""
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    """Allowed closed ranges of numeric columns, checked on ingestion."""
    differences: tuple[tuple[str, str], ...] = ()
    """Pairs (a, b) for which ``a_minus_b`` is a feature."""
    description: str = ""

    @property
    def horizon_steps(self) -> int:
        return int(self.horizon / self.step) if self.step else 0

    @property
    def label(self) -> str:
        """Name of the label column the model learns: the target one horizon ahead."""
        return f"{self.target}_ahead" if self.horizon else self.target


ELEC2 = DatasetSpec(
    name="elec2",
    target="price_up",
    timestamp="ts",
    numeric=("period", "nswprice", "nswdemand", "vicprice", "vicdemand", "transfer"),
    rename={
        "feat_1": "period",
        "feat_2": "nswprice",
        "feat_3": "nswdemand",
        "feat_4": "vicprice",
        "feat_5": "vicdemand",
        "feat_6": "transfer",
        "target": "price_up",
    },
    horizon=timedelta(hours=24),
    step=timedelta(minutes=30),
    # The file has no date column. `period` restarts every 48 rows, so row i is taken to be
    # 1996-05-07 00:00 UTC + i x 30 min. The last row then falls on 1998-12-06, a day after the
    # end date given in the literature, so dates may be off by one day.
    start=datetime(1996, 5, 7),
    ranges={c: (0.0, 1.0) for c in ("period", "nswprice", "nswdemand", "vicprice", "vicdemand", "transfer")},
    differences=(("nswprice", "vicprice"), ("nswdemand", "vicdemand")),
    description=(
        "Elec2: half-hourly New South Wales electricity market, May 1996 - Dec 1998 "
        "(M. Harries, 1999; OpenML 151). price_up = 1 when the NSW price is above its "
        "24-hour moving average. The model predicts price_up 24 hours ahead."
    ),
)

DATASETS = {ELEC2.name: ELEC2}


def current_spec() -> DatasetSpec:
    """The dataset this code location serves, from ``MLOPS_DATASET`` (default ``elec2``)."""
    import os

    name = os.environ.get("MLOPS_DATASET", ELEC2.name)
    if name not in DATASETS:
        raise KeyError(f"MLOPS_DATASET={name!r} is not declared; known datasets: {sorted(DATASETS)}")
    return DATASETS[name]
