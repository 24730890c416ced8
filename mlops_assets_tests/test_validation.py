"""Validation from declarations: row-level failures split off with their kind (case c11: null,
NaN and inf told apart), structural failures raised with file, column, line, expected and found,
and the quarantine threshold."""

from pathlib import Path

import pandera.polars as pa
import polars as pl
import pytest

from mlops_assets.datasets import ELEC2, load_declaration
from mlops_assets.sources import StructuralError, read_declared, read_file, read_source
from mlops_assets.validation import (
    QUARANTINE_COLUMNS, ColumnRule, build_schema, coerce_to_schema, describe_failures,
    failure_cases, quarantine_verdict, raw_schema, split_valid_rows,
)

HERE = Path(__file__).parent
C11 = HERE / "cases" / "c11_null_nan_inf" / "amounts.csv"
CHURN_YAML = HERE / "data" / "churn" / "churn.yaml"


@pytest.fixture(scope="module")
def churn():
    spec = load_declaration(CHURN_YAML)
    return spec, read_declared(spec)


@pytest.fixture()
def amounts():
    return read_file(C11, types={"row": "int64", "amount": "float64"}).frame


AMOUNT_SCHEMA = build_schema(
    "amounts", {"row": ColumnRule(pl.Int64()), "amount": ColumnRule(pl.Float64())},
    key=("row",), provenance=True)


# ------------------------------------------------------------------ case c11


def test_c11_null_nan_and_inf_are_rejected_each_with_its_kind(amounts):
    valid, quarantined = split_valid_rows(AMOUNT_SCHEMA, amounts)
    assert valid["row"].to_list() == [1, 2]
    assert quarantined["row"].to_list() == [3, 4, 5]
    assert quarantined["reason"].to_list() == ["null", "nan", "inf"]
    assert quarantined["column"].to_list() == ["amount"] * 3
    assert quarantined["source_file"].to_list() == ["amounts.csv"] * 3
    assert quarantined["source_line"].to_list() == [4, 5, 6]
    assert quarantined["failures"].to_list() == ["amount: null", "amount: nan", "amount: inf"]
    assert set(QUARANTINE_COLUMNS) <= set(quarantined.columns)
    # every row lands on exactly one side
    assert valid.height + quarantined.height == amounts.height


def test_c11_kinds_are_distinct_in_failure_cases_and_their_description(amounts):
    cases = failure_cases(AMOUNT_SCHEMA, amounts)
    assert cases.sort("index").select("index", "kind").rows() == [(2, "null"), (3, "nan"), (4, "inf")]
    text = describe_failures(cases, amounts)
    assert "(null; value None) at amounts.csv: line 4" in text
    assert "(nan; value 'NaN') at amounts.csv: line 5" in text
    assert "(inf; value 'inf') at amounts.csv: line 6" in text


def test_c11_nan_reported_by_pandera_as_not_nullable_is_still_named_nan(amounts):
    # A hand-written pandera schema: pandera counts NaN as null; the kind still says nan.
    schema = pa.DataFrameSchema({"amount": pa.Column(pl.Float64, nullable=False)})
    cases = failure_cases(schema, amounts).sort("index")
    assert cases["check"].to_list() == ["not_nullable", "not_nullable"]
    assert cases["kind"].to_list() == ["null", "nan"]


def test_finite_floats_in_range_allow_declared_nulls():
    schema = build_schema("x", {"v": ColumnRule(pl.Float64(), required=False, range=(0, 10))})
    df = pl.DataFrame({"v": [None, 5.0, float("nan"), float("-inf"), 11.0]})
    valid, quarantined = split_valid_rows(schema, df)
    assert valid["v"].to_list() == [None, 5.0]
    assert quarantined["reason"].to_list() == ["nan", "inf", "out_of_range"]
    # no provenance in the frame: the columns are there, empty
    assert quarantined["source_line"].to_list() == [None] * 3


# ------------------------------------------------------------------ the declared schema


def test_raw_schema_passes_the_churn_dataset(churn):
    spec, df = churn
    assert failure_cases(raw_schema(spec), df) is None
    valid, quarantined = split_valid_rows(spec, df)
    assert valid.height == 2000 and quarantined.height == 0
    assert quarantined.columns == [*df.columns, *QUARANTINE_COLUMNS]


def test_raw_schema_rules_follow_the_declaration(churn):
    spec, df = churn
    first = pl.col("source_file") == "batch_01.csv"

    def at(line: int, column: str, value) -> pl.Expr:
        hit = first & (pl.col("source_line") == line)
        return pl.when(hit).then(pl.lit(value)).otherwise(pl.col(column)).alias(column)

    faulty = df.with_columns(
        at(2, "tenure_months", 500), at(3, "plan", "gold"), at(4, "monthly_fee", None),
        at(5, "churned", 2), at(6, "customer_id", "C00001"), at(7, "data_usage_gb", None),
    )
    valid, quarantined = split_valid_rows(spec, faulty)
    got = quarantined.select("source_line", "reason", "column").rows()
    assert got == [
        (2, "out_of_range", "tenure_months"),
        (3, "not_allowed", "plan"),
        (4, "null", "monthly_fee"),
        (5, "not_allowed", "churned"),
        (6, "duplicate_key", "customer_id"),  # C00001 again (line 2 holds the first one)
    ]
    # a declared-nullable null (line 7) is fine; every other row is valid
    assert valid.height == 2000 - 5
    assert 7 in valid.filter(first)["source_line"].to_list()
    verdict = quarantine_verdict(quarantined, faulty.height, spec.quarantine_max_share)
    assert verdict.passed and verdict.share == 5 / 2000


def test_elec2_raw_schema_keeps_one_row_per_timestamp(tmp_path):
    path = tmp_path / "elec2.csv"
    features = {f"feat_{i}": [0.5] * 4 for i in range(1, 7)}
    pl.DataFrame({**features, "target": [0, 1, 1, 0]}).write_csv(path)
    df = read_source(ELEC2, path)
    assert failure_cases(raw_schema(ELEC2), df) is None
    doubled = pl.concat([df, df.tail(1)])
    valid, quarantined = split_valid_rows(ELEC2, doubled)
    assert valid.height == 4
    assert quarantined["reason"].to_list() == ["duplicate_key"]
    assert quarantined["failures"].to_list() == [
        "ts: duplicate_key; source_file, source_line: duplicate_source_line"]


# ------------------------------------------------------------------ structural failures


def test_missing_column_is_one_structural_error(churn):
    spec, df = churn
    with pytest.raises(StructuralError) as err:
        split_valid_rows(spec, df.drop("monthly_fee"))
    e = err.value
    assert (e.column, e.line) == ("monthly_fee", 1)
    assert "batch_01.csv" in e.file and "expected a column 'monthly_fee' of type Float64" in str(e)
    assert "found columns [" in str(e)


def test_type_that_cannot_be_coerced_names_file_line_expected_and_found(churn):
    spec, df = churn
    as_text = df.with_columns(pl.col("monthly_fee").cast(pl.String))
    valid, _ = split_valid_rows(spec, as_text)  # text that holds numbers is coerced
    assert valid.schema["monthly_fee"] == pl.Float64
    broken = as_text.with_columns(
        pl.when((pl.col("source_file") == "batch_03.csv") & (pl.col("source_line") == 42))
        .then(pl.lit("twelve")).otherwise(pl.col("monthly_fee")).alias("monthly_fee"))
    with pytest.raises(StructuralError) as err:
        split_valid_rows(spec, broken)
    e = err.value
    assert (e.file, e.column, e.line) == ("batch_03.csv", "monthly_fee", 42)
    assert "expected type Float64, found 'twelve' (String)" in str(e)


def test_lossy_cast_is_refused():
    schema = build_schema("x", {"n": ColumnRule(pl.Int64())})
    with pytest.raises(StructuralError, match=r"row 2, column 'n': expected type Int64, found 2\.5"):
        coerce_to_schema(schema, pl.DataFrame({"n": [1.0, 2.5]}))


# ------------------------------------------------------------------ the threshold


def test_quarantine_threshold():
    assert quarantine_verdict(0, 0, 0.0).passed
    assert quarantine_verdict(0, 100, 0.0).passed
    assert not quarantine_verdict(1, 100, 0.0).passed
    assert quarantine_verdict(2, 100, 0.02).passed
    v = quarantine_verdict(3, 100, 0.02)
    assert not v.passed and v.share == 0.03
    assert v.message == "3 of 100 row(s) quarantined (3.00%), above the allowed share of 2.00%"
    with pytest.raises(ValueError):
        quarantine_verdict(1, 100, 1.5)


def test_feature_table_schema_refuses_inf_bad_labels_and_duplicate_keys():
    """The features asset's blocking check: nulls pass (lags start empty), inf, a label
    outside {0, 1} and a repeated key do not."""
    from datetime import datetime, timezone

    from mlops_assets.datasets import ELEC2
    from mlops_assets.validation import failure_cases, features_schema

    ts = [datetime(1996, 5, 7, h, tzinfo=timezone.utc) for h in range(4)]
    good = pl.DataFrame({
        "ts": ts, "window": ["1996-05"] * 4, "nswprice_lag_1": [None, 0.1, 0.2, 0.3],
        "price_up_ahead": [0, 1, None, 1],
    })
    feats = ["nswprice_lag_1"]
    assert failure_cases(features_schema(ELEC2, good, feats), good) is None
    bad = good.with_columns(
        pl.Series("nswprice_lag_1", [None, float("inf"), 0.2, 0.3]),
        pl.Series("price_up_ahead", [0, 1, None, 2]),
        pl.Series("ts", [ts[0], ts[1], ts[2], ts[2]]),
    )
    cases = failure_cases(features_schema(ELEC2, bad, feats), bad)
    assert set(cases["kind"]) >= {"inf", "not_allowed", "duplicate_key"}
