"""Writes the small synthetic churn dataset next to this file (the CSVs are committed; rerun to
regenerate them identically): 2,000 customers in four batch files of 500, no time column, mixed
categorical and numeric columns, about 5 % churners. Headers are written the way a spreadsheet
export would have them (spaces, capitals, an accent, units in brackets) so that reading them
exercises name normalisation.

    .venv/bin/python mlops_assets_tests/data/churn/make_churn.py
"""

import csv
import math
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEED = 20261204
ROWS, BATCHES = 2000, 4
HEADER = ["Customer ID", "Plan", "Región", "Payment Method", "Tenure (months)", "Monthly Fee",
          "Support Calls", "Data Usage (GB)", "Churned"]
PLANS = {"basic": (0.5, 14.99), "standard": (0.35, 29.99), "premium": (0.15, 59.99)}
REGIONS = ["north", "south", "east", "west"]
PAYMENTS = ["card", "transfer", "cash"]
TARGET_SHARE = 0.05


def _poisson(rng: random.Random, lam: float) -> int:
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def customers(rng: random.Random) -> list[dict]:
    rows = []
    for i in range(ROWS):
        plan = rng.choices(list(PLANS), weights=[w for w, _ in PLANS.values()])[0]
        tenure = min(int(rng.expovariate(1 / 24)), 120)
        fee = round(PLANS[plan][1] * rng.uniform(0.85, 1.25), 2)
        calls = _poisson(rng, 1.2 + (0.8 if plan == "basic" else 0.0))
        usage = round(rng.lognormvariate(2.5 if plan != "premium" else 3.2, 0.6), 1)
        score = 0.55 * calls - 0.05 * tenure + (0.7 if plan == "basic" else 0.0) + 0.01 * fee
        rows.append({
            "Customer ID": f"C{i + 1:05d}",
            "Plan": plan,
            "Región": rng.choice(REGIONS),
            "Payment Method": "" if rng.random() < 0.02 else rng.choice(PAYMENTS),
            "Tenure (months)": tenure,
            "Monthly Fee": f"{fee:.2f}",
            "Support Calls": calls,
            "Data Usage (GB)": "" if rng.random() < 0.03 else f"{min(usage, 999.0):.1f}",
            "_score": score,
        })
    # Calibrate the intercept so that the churn probabilities average TARGET_SHARE.
    lo, hi = -20.0, 20.0
    for _ in range(60):
        mid = (lo + hi) / 2
        mean = sum(1 / (1 + math.exp(-(mid + r["_score"]))) for r in rows) / len(rows)
        lo, hi = (mid, hi) if mean < TARGET_SHARE else (lo, mid)
    for r in rows:
        p = 1 / (1 + math.exp(-(lo + r.pop("_score"))))
        r["Churned"] = "yes" if rng.random() < p else "no"
    return rows


def main() -> None:
    rows = customers(random.Random(SEED))
    size = ROWS // BATCHES
    out = HERE / "batches"
    out.mkdir(exist_ok=True)
    for b in range(BATCHES):
        with open(out / f"batch_{b + 1:02d}.csv", "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=HEADER, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows[b * size:(b + 1) * size])
    share = sum(r["Churned"] == "yes" for r in rows) / len(rows)
    print(f"wrote {ROWS} rows in {BATCHES} batches to {out}; churn share {share:.3f}")


if __name__ == "__main__":
    main()
