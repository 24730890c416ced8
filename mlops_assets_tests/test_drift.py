"""Drift statistics: known values against scipy/numpy, verdicts against Evidently, user cases."""

from __future__ import annotations

import math
import re
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy import stats
from scipy.spatial import distance

from mlops_assets.drift import (
    DriftSummary,
    detect_drift,
    jensen_shannon,
    psi_sorted,
    wasserstein_ks,
)

CASES = Path(__file__).parent / "cases"


def _no_nan(summary: DriftSummary) -> None:
    assert not math.isnan(summary.drift_share)
    for col in summary.columns:
        for name in ("score", "threshold", "psi", "ks_statistic", "ks_pvalue",
                     "reference_null_share", "current_null_share"):  # fmt: skip
            value = getattr(col, name)
            assert value is None or math.isfinite(value), (col.column, name, value)
        if col.status == "not_tested":
            assert col.score is None and col.reason
        else:
            assert col.score is not None


# ------------------------------------------------------------------ statistics vs scipy / numpy


@pytest.mark.parametrize(
    ("n_ref", "n_cur", "rounded"),
    [(300, 450, False), (2_000, 1_500, True), (30_000, 12_000, False), (20_000, 25_000, True)],
)
def test_wasserstein_and_ks_match_scipy(n_ref, n_cur, rounded):
    rng = np.random.default_rng(n_ref)
    u = rng.normal(0.0, 1.0, n_ref)
    v = rng.normal(0.15, 1.2, n_cur)
    if rounded:  # many ties, inside and across the samples
        u, v = np.round(u, 1), np.round(v, 1)
    w, ks, p = wasserstein_ks(np.sort(u), np.sort(v))
    expected = stats.ks_2samp(u, v)
    assert w == pytest.approx(stats.wasserstein_distance(u, v), rel=1e-12, abs=1e-15)
    assert ks == pytest.approx(expected.statistic, rel=1e-12, abs=1e-15)
    assert p == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-300)


def test_psi_matches_direct_numpy():
    rng = np.random.default_rng(7)
    ref = rng.gamma(2.0, 1.0, 5_000)
    cur = rng.gamma(2.3, 1.0, 4_000)
    # direct: decile edges of the reference, np.digitize bins, empty bins at 1e-4
    edges = np.unique(np.quantile(ref, np.linspace(0.1, 0.9, 9)))
    r = np.bincount(np.digitize(ref, edges), minlength=edges.size + 1) / ref.size
    c = np.bincount(np.digitize(cur, edges), minlength=edges.size + 1) / cur.size
    r, c = np.where(r == 0, 1e-4, r), np.where(c == 0, 1e-4, c)
    expected = np.sum((r - c) * np.log(r / c))
    assert psi_sorted(np.sort(ref), np.sort(cur)) == pytest.approx(expected, rel=1e-12)
    # same distribution -> small; heavy ties in the reference (duplicate edges) -> still finite
    assert psi_sorted(np.sort(ref), np.sort(ref)) == pytest.approx(0.0, abs=1e-12)
    tied = np.sort(np.r_[np.zeros(900), np.arange(100.0)])
    assert math.isfinite(psi_sorted(tied, np.sort(cur)))


def test_jensen_shannon_matches_scipy():
    p = np.array([10.0, 30.0, 0.0, 60.0])
    q = np.array([25.0, 25.0, 5.0, 45.0])
    assert jensen_shannon(p, q) == pytest.approx(distance.jensenshannon(p, q), rel=1e-12)
    assert jensen_shannon(p, p) == 0.0


def test_detect_drift_scores_match_reference_formulas():
    rng = np.random.default_rng(3)
    ref = pl.DataFrame({"x": rng.normal(5, 2, 3_000), "c": rng.choice(["a", "b", "c"], 3_000)})
    cur = pl.DataFrame(
        {"x": rng.normal(5.5, 2, 2_500), "c": rng.choice(["a", "b", "c", "d"], 2_500, p=[.4, .3, .2, .1])}
    )
    s = detect_drift(ref, cur, numeric=["x"], categorical=["c"])
    x, c = s.column("x"), s.column("c")
    u, v = ref["x"].to_numpy(), cur["x"].to_numpy()
    assert x.score == pytest.approx(stats.wasserstein_distance(u, v) / np.std(u), rel=1e-12)
    assert x.ks_statistic == pytest.approx(stats.ks_2samp(u, v).statistic, rel=1e-12)
    cats = ["a", "b", "c", "d"]
    p = np.array([(ref["c"] == k).sum() for k in cats], dtype=float)
    q = np.array([(cur["c"] == k).sum() for k in cats], dtype=float)
    assert c.score == pytest.approx(distance.jensenshannon(p, q), rel=1e-12)
    assert x.status == "drift" and c.status == "drift"
    _no_nan(s)


# ------------------------------------------------------------------ verdicts vs Evidently


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # Evidently's plots meet the inf values
def test_verdicts_match_evidently_data_drift_preset():
    import os

    os.environ.setdefault("DO_NOT_TRACK", "true")
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    rng = np.random.default_rng(11)
    n = 5_000
    ref = pl.DataFrame({f"n{i}": rng.normal(0, 1 + i, n) for i in range(5)}).with_columns(
        cat=pl.Series(rng.choice(["x", "y", "z"], n)),
    )
    cur = pl.DataFrame(
        {
            "n0": rng.normal(0.4, 1, n),  # shifted
            "n1": rng.normal(0, 2, n),
            "n2": rng.normal(0, 3 * 1.6, n),  # wider
            "n3": rng.normal(0.05, 4, n),  # small shift, below the threshold
            "n4": rng.normal(0, 5, n),
            "cat": rng.choice(["x", "y", "z"], n, p=[0.6, 0.2, 0.2]),
        }
    )
    # nulls and inf are left out by both
    cur = cur.with_columns(
        pl.when(pl.int_range(n) % 50 == 0).then(None).otherwise(pl.col("n1")).alias("n1"),
        pl.when(pl.int_range(n) % 97 == 0).then(float("inf")).otherwise(pl.col("n4")).alias("n4"),
    )
    numeric = [f"n{i}" for i in range(5)]
    ours = detect_drift(ref, cur, numeric=numeric, categorical=["cat"])

    definition = DataDefinition(numerical_columns=numeric, categorical_columns=["cat"])
    snap = Report(
        [DataDriftPreset(num_method="wasserstein", cat_method="jensenshannon")], include_tests=False
    ).run(
        current_data=Dataset.from_pandas(cur.to_pandas(), data_definition=definition),
        reference_data=Dataset.from_pandas(ref.to_pandas(), data_definition=definition),
    )
    theirs = {}
    for metric in snap.dict()["metrics"]:
        config = metric["config"]
        if config["type"].endswith("ValueDrift"):
            theirs[config["column"]] = (float(metric["value"]), float(config["threshold"]))
        elif config["type"].endswith("DriftedColumnsCount"):
            share = float(metric["value"]["share"])

    assert set(theirs) == set(numeric) | {"cat"}
    for col in ours.columns:
        score, threshold = theirs[col.column]
        assert col.score == pytest.approx(score, rel=1e-9), col.column
        assert (col.status == "drift") == (score >= threshold), col.column
    assert {c.column for c in ours.columns if c.status == "drift"} == {"n0", "n2", "cat"}
    assert ours.drift_share == pytest.approx(share)
    assert ours.column("n1").current_null_share == pytest.approx(0.02)
    assert ours.column("n4").current_inf_share == pytest.approx(52 / n)


# ------------------------------------------------------------------ user cases


def test_c13_all_null_column_is_not_tested_and_reported():
    d = CASES / "c13_drift_all_null"
    ref, cur = pl.read_csv(d / "reference.csv"), pl.read_csv(d / "current.csv")
    for numeric, categorical in ((None, None), (["age"], ["plan", "promo_code"])):
        s = detect_drift(ref, cur, numeric=numeric, categorical=categorical)
        promo = s.column("promo_code")
        assert promo.status == "not_tested"
        assert promo.reason == "all null in reference"
        assert (promo.reference_null_share, promo.current_null_share) == (1.0, 0.0)
        assert s.n_tested == 2  # age and plan still compared
        _no_nan(s)
        assert "promo_code" in s.to_markdown()
    # declared numeric while the CSV typed it String (all empty) -> still "all null", no crash
    s = detect_drift(ref, cur, numeric=["age", "promo_code"], categorical=[])
    assert s.column("promo_code").reason == (
        "all null in reference; dtype String is not numeric in current"
    )
    # the other way round: all null in current, and all null on both sides
    s = detect_drift(cur, ref, numeric=None, categorical=None)
    assert s.column("promo_code").reason == "all null in current"
    s = detect_drift(ref, ref, numeric=None, categorical=None)
    assert s.column("promo_code").reason == "all null in reference and current"
    _no_nan(s)


def test_c14_constant_column_and_extra_column():
    d = CASES / "c14_drift_constant_and_extra"
    ref = pl.read_csv(d / "reference.csv")
    for parse_dates in (False, True):
        cur = pl.read_csv(d / "current.csv", try_parse_dates=parse_dates)
        s = detect_drift(ref, cur, numeric=None, categorical=None)
        member = s.column("is_member")
        assert member.status == "no_drift" and member.score == 0.0
        assert "constant" in member.reason
        extra = s.column("loaded_at")
        assert extra.status == "not_tested" and extra.reason == "only in current"
        assert s.n_tested == 2
        _no_nan(s)
    s = detect_drift(ref, cur, numeric=["tenure", "is_member", "loaded_at"], categorical=[])
    assert s.column("loaded_at").reason == "only in current"
    s = detect_drift(cur, ref, numeric=["tenure", "is_member", "loaded_at"], categorical=[])
    assert s.column("loaded_at").reason == "only in reference"
    # drift share is over tested columns only, never NaN
    assert s.drift_share == s.n_drifted / s.n_tested


# ------------------------------------------------------------------ the rest of the kind


def test_constant_reference_with_moved_current_follows_evidently_norm():
    ref = pl.DataFrame({"k": [3.0] * 200, "c": ["a"] * 200})
    cur = pl.DataFrame({"k": [3.0] * 150 + [4.0] * 50, "c": ["a"] * 150 + ["b"] * 50})
    s = detect_drift(ref, cur, numeric=["k"], categorical=["c"])
    k = s.column("k")
    # Evidently: wasserstein / max(std, 0.001) -> 0.25 / 0.001
    assert k.score == pytest.approx(250.0) and k.status == "drift"
    assert "constant in reference" in k.reason
    assert s.column("c").status == "drift"
    same = detect_drift(ref, ref, numeric=["k"], categorical=["c"])
    assert [c.status for c in same.columns] == ["no_drift", "no_drift"]
    assert all(c.score == 0.0 and "constant" in c.reason for c in same.columns)
    _no_nan(s)
    _no_nan(same)


def test_empty_current_frame_tests_nothing():
    ref = pl.DataFrame({"x": [1.0, 2.0, 3.0], "c": ["a", "b", "a"]})
    for cur in (ref.clear(), ref.head(0)):
        s = detect_drift(ref, cur, numeric=None, categorical=None, key_columns=["x"])
        assert not s.drifted and s.n_tested == 0 and s.drift_share == 0.0
        assert all(c.status == "not_tested" for c in s.columns)
        assert all(c.reason == "current frame is empty (0 rows)" for c in s.columns)
        assert "empty" in s.reason
        _no_nan(s)
    s = detect_drift(ref.clear(), ref, numeric=None, categorical=None)
    assert s.columns[0].reason == "reference frame is empty (0 rows)" and not s.drifted


def test_non_finite_values_are_left_out_and_counted():
    rng = np.random.default_rng(5)
    base = rng.normal(0, 1, 1_000)
    polluted = np.r_[base, [np.inf, -np.inf, np.nan, np.nan]]
    ref = pl.DataFrame({"x": base})
    cur = pl.DataFrame({"x": pl.Series(list(polluted) + [None], dtype=pl.Float64)})
    x = detect_drift(ref, cur, numeric=["x"], categorical=[]).column("x")
    assert x.score == 0.0 and x.status == "no_drift"
    assert x.current_null_share == pytest.approx(3 / 1_005)  # 2 NaN + 1 null
    assert x.current_inf_share == pytest.approx(2 / 1_005)
    only_inf = pl.DataFrame({"x": [np.inf, -np.inf, None]})
    x = detect_drift(ref, only_inf, numeric=["x"], categorical=[]).column("x")
    assert x.status == "not_tested" and x.reason == "no finite values in current"
    nan_cat = pl.DataFrame({"x": [np.nan, None]})
    x = detect_drift(nan_cat, nan_cat, numeric=[], categorical=["x"]).column("x")
    assert x.reason == "all null in reference and current"


def test_dtype_inference_and_wrong_dtypes():
    ref = pl.DataFrame(
        {
            "i": [1, 2, 3, 4],
            "f": [0.1, 0.2, 0.3, 0.4],
            "b": [True, False, True, None],
            "s": ["a", "b", "a", "b"],
            "cat": pl.Series(["u", "v", "u", "v"], dtype=pl.Categorical),
            "e": pl.Series(["p", "q", "p", "q"], dtype=pl.Enum(["p", "q"])),
            "ts": pl.datetime_range(pl.datetime(2026, 1, 1), pl.datetime(2026, 1, 4), "1d", eager=True),
        }
    )
    s = detect_drift(ref, ref, numeric=None, categorical=None)
    kinds = {c.column: c.kind for c in s.columns}
    assert kinds == {"i": "numeric", "f": "numeric", "b": "categorical", "s": "categorical",
                     "cat": "categorical", "e": "categorical", "ts": "unsupported"}  # fmt: skip
    assert s.column("ts").status == "not_tested" and s.n_drifted == 0
    # only one list given: the other kind is inferred from the remaining columns
    s = detect_drift(ref, ref, numeric=["i"], categorical=None)
    assert [c.column for c in s.columns if c.kind != "unsupported"] == ["i", "b", "s", "cat", "e"]
    # a String column declared numeric is reported, not fatal
    s = detect_drift(ref, ref, numeric=["s"], categorical=[])
    assert s.column("s").status == "not_tested" and "not numeric" in s.column("s").reason
    # nested values declared categorical; a Null-typed side next to a datetime one
    nested = pl.DataFrame({"l": [[1], [2]], "t": [None, None]})
    timed = pl.DataFrame({"l": [[1], [3]], "t": [datetime(2026, 1, 1)] * 2})
    s = detect_drift(nested, timed, numeric=None, categorical=["l"])
    assert s.column("l").status == "not_tested" and "cannot be compared" in s.column("l").reason
    assert s.column("t").reason.startswith("dtype Datetime")
    with pytest.raises(ValueError, match="both numeric and categorical"):
        detect_drift(ref, ref, numeric=["i"], categorical=["i"])
    with pytest.raises(ValueError, match="key columns"):
        detect_drift(ref, ref, numeric=["i"], categorical=[], key_columns=["nope"])


def test_table_verdict_share_and_key_columns():
    rng = np.random.default_rng(9)
    n = 2_000
    ref = pl.DataFrame({f"x{i}": rng.normal(0, 1, n) for i in range(4)})
    cur = pl.DataFrame({f"x{i}": rng.normal(1.0 if i == 0 else 0, 1, n) for i in range(4)})
    cols = [f"x{i}" for i in range(4)]
    s = detect_drift(ref, cur, numeric=cols, categorical=[])
    assert (s.n_drifted, s.n_tested, s.drift_share, s.drifted) == (1, 4, 0.25, False)
    assert detect_drift(ref, cur, numeric=cols, categorical=[], drift_share=0.25).drifted
    keyed = detect_drift(ref, cur, numeric=cols, categorical=[], key_columns=["x0"])
    assert keyed.drifted and keyed.key_columns_drifted == ("x0",)
    assert not detect_drift(ref, cur, numeric=cols, categorical=[], key_columns=["x1"]).drifted


def test_to_frame_has_fixed_dtypes_and_markdown_is_compact():
    ref = pl.DataFrame({"a": [None, None]}, schema={"a": pl.Float64})
    s = detect_drift(ref, ref, numeric=["a"], categorical=[])
    frame = s.to_frame()
    assert frame.height == 1 and pl.Null not in frame.schema.dtypes()
    assert frame.schema["score"] == pl.Float64 and frame["score"][0] is None
    md = detect_drift(
        pl.DataFrame({"we|ird": [1.0, 2.0]}), pl.DataFrame({"we|ird": [1.0, 2.5]}),
        numeric=None, categorical=None,
    ).to_markdown()  # fmt: skip
    assert "we\\|ird" in md and md.count("\n| ") == 2


# ------------------------------------------------------------------ the HTML report (slow: ~10 s)


def test_evidently_report_is_self_contained_and_tolerates_bad_columns(tmp_path):
    from mlops_assets.reports import write_evidently_report

    rng = np.random.default_rng(2)
    n = 400
    ref = pl.DataFrame(
        {
            "x": rng.normal(0, 1, n),
            "k": [1.0] * n,  # constant
            "c": rng.choice(["a", "b"], n),
            "gone": rng.normal(0, 1, n),  # only in reference
            "empty": pl.Series([None] * n, dtype=pl.String),  # all null in reference
            # outside pandas' nanosecond range, not a feature: must not reach pandas
            "ts": pl.Series([datetime(9999, 12, 31)] * n, dtype=pl.Datetime("us")),
        }
    )
    cur = ref.drop("gone").with_columns(
        x=pl.Series(rng.normal(0.5, 1, n)), empty=pl.Series(rng.choice(["p", "q"], n))
    )
    out = write_evidently_report(
        ref, cur, numeric=["x", "k", "gone"], categorical=["c", "empty"],
        path=tmp_path / "sub" / "drift.html", sample_rows=300,
    )  # fmt: skip
    text = out.read_text(encoding="utf-8")
    assert out == tmp_path / "sub" / "drift.html" and len(text) > 10_000
    assert not re.search(r"<script[^>]+src\s*=\s*[\"']?(https?:)?//", text, re.I)
    assert not re.search(r"<link[^>]+href\s*=\s*[\"']?(https?:)?//", text, re.I)
    # nothing comparable -> a short page, not an exception
    small = write_evidently_report(ref, cur.clear(), ["x"], [], tmp_path / "empty.html")
    assert "no rows" in small.read_text(encoding="utf-8")


def test_sorted_quantile_is_np_quantile_bit_for_bit():
    from mlops_assets.drift import sorted_quantile

    rng = np.random.default_rng(11)
    for q in (np.arange(1, 10) / 10, np.linspace(0.0, 1.0, 23)):
        for n in [*range(1, 60), 1_001, 54_321]:
            samples = (rng.normal(size=n), np.round(rng.normal(size=n), 1), rng.integers(0, 5, n) * 1.0)
            for x in samples:
                x = np.sort(x)
                assert np.array_equal(sorted_quantile(x, q), np.quantile(x, q)), n


def test_numeric_fast_paths_agree_with_the_general_path():
    """Null-free float, float32 and integer columns take a numpy fast path; NaN and +/-inf in a
    null-free float column are still left out and counted, as with the general (nullable) path."""
    rng = np.random.default_rng(5)
    ref = rng.normal(0.0, 1.0, 20_000)
    cur = rng.normal(0.2, 1.0, 20_000)
    cur[:7], cur[7:10], cur[10:12] = np.nan, np.inf, -np.inf
    ints = rng.integers(0, 50, 20_000)
    fast = detect_drift(
        pl.DataFrame({"x": ref, "f32": ref.astype(np.float32), "i": ints}),
        pl.DataFrame({"x": cur, "f32": cur.astype(np.float32), "i": ints[::-1] + 3}),
        numeric=["x", "f32", "i"], categorical=[],
    )
    # a null in an extra row forces the general path; the null is left out of the statistics
    slow = detect_drift(
        pl.DataFrame({"x": [*ref, None], "f32": [*ref.astype(np.float32).tolist(), None],
                      "i": [*ints.tolist(), None]}),
        pl.DataFrame({"x": [*cur, None], "f32": [*cur.astype(np.float32).tolist(), None],
                      "i": [*(ints[::-1] + 3).tolist(), None]}),
        numeric=["x", "f32", "i"], categorical=[],
    )
    for name in ("x", "f32", "i"):
        a, b = fast.column(name), slow.column(name)
        assert a.score == b.score and a.ks_statistic == b.ks_statistic and a.psi == b.psi, name
    x = fast.column("x")
    assert x.current_null_share == pytest.approx(7 / 20_000)
    assert x.current_inf_share == pytest.approx(5 / 20_000)
    assert x.score == pytest.approx(
        stats.wasserstein_distance(ref, cur[np.isfinite(cur)]) / np.std(ref), rel=1e-12)
