"""Declarations and source reading: YAML declarations (Elec2 and a churn dataset without time),
CSV dialects (case c09), column-name normalisation, Parquet, Delta, folders and globs."""

import shutil
from datetime import date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from deltalake import write_deltalake

from mlops_assets import datasets
from mlops_assets.datasets import (
    ELEC2, CsvDialect, DeclarationError, current_spec, load_declaration, parse_duration,
    spec_from_mapping,
)
from mlops_assets.sources import (
    SourceError, StructuralError, batch_name, batches, normalise_name, normalise_names,
    parse_column, read_batch, read_declared, read_file, read_source, source_paths,
)

HERE = Path(__file__).parent
C09 = HERE / "cases" / "c09_csv_dialects"
CHURN_YAML = HERE / "data" / "churn" / "churn.yaml"
SPANISH = CsvDialect(encoding="cp1252", separator=";", decimal=",", thousands=".")
ELEC2_COLUMNS = ["ts", "window", "period", "nswprice", "nswdemand", "vicprice", "vicdemand",
                 "transfer", "price_up", "source_file", "source_sha256", "source_line"]


@pytest.fixture(scope="module")
def churn():
    return load_declaration(CHURN_YAML)


def _elec2_like(path: Path, rows: int = 100) -> Path:
    """A file shaped like the Elec2 CSV: feat_1..feat_6 and target, no time column."""
    pl.DataFrame({
        **{f"feat_{i}": [((r * 7 + i) % 100) / 100 for r in range(rows)] for i in range(1, 7)},
        "target": [r % 2 for r in range(rows)],
    }).write_csv(path)
    return path


# ------------------------------------------------------------------ column names


def test_names_are_normalised_to_snake_case_with_originals_kept():
    names = ["Número Cliente", "Dirección", "Código Postal", "kWh", "Tenure (months)",
             "Straße", "\ufeffid", "a-b.c", "", "Importe", "importe", "Importe_2"]
    mapping = normalise_names(names)
    assert list(mapping) == [
        "numero_cliente", "direccion", "codigo_postal", "kwh", "tenure_months",
        "strasse", "id", "a_b_c", "column_9", "importe", "importe_3", "importe_2",
    ]
    # every original is kept, including the ones that collided
    assert list(mapping.values()) == names
    assert normalise_name("  Monthly Fee (€) ") == "monthly_fee"


def test_c09_cp1252_semicolon_decimal_comma_with_declared_dialect():
    batch = read_file(C09 / "cp1252_semicolon.csv", dialect=SPANISH,
                      types={"numero_cliente": "int64", "importe": "float64"})
    df = batch.frame
    assert df.columns[:4] == ["numero_cliente", "direccion", "codigo_postal", "importe"]
    assert df["importe"].to_list() == [1299.99, 87.5]
    assert df["numero_cliente"].to_list() == [1001, 1002]
    assert df["direccion"].to_list() == ["Calle Mayor 5, 2ºB", "Rúa Nova 12"]  # decoded, no \r
    assert df["codigo_postal"].to_list() == ["28013", "15705"]  # text unless declared otherwise
    assert batch.columns == {"numero_cliente": "Número Cliente", "direccion": "Dirección",
                             "codigo_postal": "Código Postal", "importe": "Importe"}
    assert df["source_line"].to_list() == [2, 3]


def test_c09_dialect_declared_in_yaml_is_the_one_used(tmp_path):
    decl = tmp_path / "clientes.yaml"
    decl.write_text(
        "name: clientes\ntarget: numero_cliente\nwindows: batch\n"
        "source:\n  path: clientes.csv\n  dialect: {encoding: cp1252, separator: ';', "
        "decimal: ',', thousands: '.'}\n", encoding="utf-8")
    spec = load_declaration(decl)
    assert spec.source.dialect == SPANISH
    assert spec.source.location == str(tmp_path / "clientes.csv")
    batch = read_file(C09 / "cp1252_semicolon.csv", dialect=spec.source.dialect,
                      types={"importe": "float64"})
    assert batch.frame["importe"].to_list() == [1299.99, 87.5]


@pytest.mark.parametrize("encoding", ["utf-8", "utf8", "UTF-8", "utf-8-sig"])
def test_c09_utf8_bom_never_reaches_a_column_name(encoding):
    batch = read_file(C09 / "utf8_bom.csv", dialect=CsvDialect(encoding=encoding),
                      types={"customer_id": "int64", "monthly_fee": "float64"})
    assert batch.frame.columns[:3] == ["customer_id", "plan", "monthly_fee"]
    assert not any("\ufeff" in c for c in [*batch.frame.columns, *batch.columns.values()])
    assert batch.frame["customer_id"].to_list() == [1, 2]
    assert batch.frame["monthly_fee"].to_list() == [19.5, 29.0]


def test_c09_utf8_bom_declared_as_another_encoding_is_refused():
    with pytest.raises(SourceError, match="byte order mark.*declared 'cp1252'"):
        read_file(C09 / "utf8_bom.csv", dialect=CsvDialect(encoding="cp1252"))


def test_c09_unparsable_number_names_file_column_and_line(tmp_path):
    bad = tmp_path / "cp1252_semicolon.csv"
    data = (C09 / "cp1252_semicolon.csv").read_bytes().replace(b"87,50", b"87,5O")
    bad.write_bytes(data)
    with pytest.raises(StructuralError) as err:
        read_file(bad, dialect=SPANISH, types={"importe": "float64"})
    e = err.value
    assert (e.file, e.column, e.line) == ("cp1252_semicolon.csv", "importe", 3)
    assert "'87,5O'" in str(e) and "decimal mark ','" in str(e) and "line 3" in str(e)
    assert "header 'Importe'" in str(e)


def test_c09_number_in_the_wrong_locale_is_refused_not_misread():
    # Declared with a decimal point, "1.299,99" is not a number: refused, not read as 1.299.
    with pytest.raises(StructuralError, match=r"line 2, column 'importe'.*'1\.299,99'"):
        read_file(C09 / "cp1252_semicolon.csv", types={"importe": "float64"},
                  dialect=CsvDialect(encoding="cp1252", separator=";"))
    # With a thousands dot declared, "12.99" is not a grouped number: refused, not read as 1299.
    s, bad = parse_column(pl.Series(["1.299,99", "12.99", "-3,5", "1.000.000", "NaN", None]),
                          "float64", SPANISH)
    assert bad.to_list() == [False, True, False, False, False, False]
    assert s.to_list()[0] == 1299.99 and s[2] == -3.5 and s[3] == 1e6


def test_c09_wrong_encoding_names_the_line():
    with pytest.raises(StructuralError, match=r"cp1252_semicolon\.csv, line 1: expected text in utf-8"):
        read_file(C09 / "cp1252_semicolon.csv", dialect=CsvDialect(separator=";"))


def test_integer_columns_refuse_values_that_are_not_whole():
    s, bad = parse_column(pl.Series(["1", "2.0", " 3 ", "2.5", ""]), "int64")
    assert s.to_list() == [1, 2, 3, None, None]
    assert bad.to_list() == [False, False, False, True, False]
    s, bad = parse_column(pl.Series([1.0, 2.5]), "int64")
    assert bad.to_list() == [False, True]


def test_file_without_header_takes_declared_names(tmp_path):
    path = tmp_path / "nohead.csv"
    path.write_text("1|a\n2|b\n", encoding="utf-8")
    batch = read_file(path, types={"id": "int64"},
                      dialect=CsvDialect(separator="|", header=False, columns=("Id", "Name")))
    assert batch.frame["id"].to_list() == [1, 2]
    assert batch.frame["source_line"].to_list() == [1, 2]
    assert batch.columns == {"id": "Id", "name": "Name"}


# ------------------------------------------------------------------ declarations


def test_elec2_is_a_bundled_declaration_with_the_same_meaning():
    assert datasets.DATASETS["elec2"] is ELEC2
    assert ELEC2.declared_in.endswith("declarations/elec2.yaml")
    assert (ELEC2.name, ELEC2.target, ELEC2.timestamp) == ("elec2", "price_up", "ts")
    assert ELEC2.numeric == ("period", "nswprice", "nswdemand", "vicprice", "vicdemand", "transfer")
    assert ELEC2.rename == {**{f"feat_{i + 1}": c for i, c in enumerate(ELEC2.numeric)},
                            "target": "price_up"}
    assert ELEC2.horizon == timedelta(hours=24) and ELEC2.step == timedelta(minutes=30)
    assert ELEC2.horizon_steps == 48 and ELEC2.label == "price_up_ahead"
    assert ELEC2.start == datetime(1996, 5, 7)
    assert ELEC2.ranges == {c: (0.0, 1.0) for c in ELEC2.numeric}
    assert ELEC2.differences == (("nswprice", "vicprice"), ("nswdemand", "vicdemand"))
    assert (ELEC2.windows, ELEC2.window_start, ELEC2.window_end) == (
        "monthly", date(1996, 5, 1), date(1999, 1, 1))
    assert ELEC2.source.fetch == "elec2" and ELEC2.categorical == ()
    assert ELEC2.key_columns == ("ts",) and ELEC2.ordering == ("ts",)
    assert ELEC2.description.startswith("Elec2: half-hourly")


def test_elec2_shaped_file_reads_as_before(tmp_path):
    path = _elec2_like(tmp_path / "elec2.csv")
    df = read_source(ELEC2, path)
    assert df.columns == ELEC2_COLUMNS
    assert df.schema["ts"] == pl.Datetime("us", "UTC") and df.schema["price_up"] == pl.Int64
    assert all(df.schema[c] == pl.Float64 for c in ELEC2.numeric)
    assert df["ts"][0] == datetime.fromisoformat("1996-05-07T00:00:00+00:00")
    assert (df["ts"][1] - df["ts"][0]) == timedelta(minutes=30)
    assert df["source_line"].to_list() == list(range(2, 102))
    assert df["window"].unique().to_list() == ["1996-05"]
    assert df["source_file"][0] == "elec2.csv"


def test_elec2_landing_file_with_iso_ts_is_read_as_is(tmp_path):
    path = tmp_path / "elec2_1996-07.csv"
    pl.DataFrame({
        "ts": ["1996-07-01T00:00:00Z", "1996-07-01T00:30:00Z"],
        **{f"feat_{i}": [0.1, 0.2] for i in range(1, 7)}, "target": [0, 1],
    }).write_csv(path)
    df = read_source(ELEC2, path)
    assert df.columns == ELEC2_COLUMNS
    assert df["window"].to_list() == ["1996-07", "1996-07"]
    assert df["ts"][1] == datetime.fromisoformat("1996-07-01T00:30:00+00:00")


def test_current_spec_takes_a_bundled_name_or_a_yaml_path(monkeypatch):
    monkeypatch.delenv("MLOPS_DATASET", raising=False)
    assert current_spec() is ELEC2
    monkeypatch.setenv("MLOPS_DATASET", "elec2")
    assert current_spec() is ELEC2
    monkeypatch.setenv("MLOPS_DATASET", str(CHURN_YAML))
    assert current_spec().name == "churn"
    monkeypatch.setenv("MLOPS_DATASET", "nope")
    with pytest.raises(KeyError, match="known datasets"):
        current_spec()


def test_declarations_refuse_mistakes_with_a_clear_message():
    base = {"name": "x", "target": "y", "source": "x.csv", "numeric": ["a"]}
    with pytest.raises(DeclarationError, match=r"unknown key\(s\) \['numerics'\]"):
        spec_from_mapping({**base, "numerics": ["a"]})
    with pytest.raises(DeclarationError, match="monthly windows are cut from a time column"):
        spec_from_mapping({**base, "windows": "monthly"})
    with pytest.raises(DeclarationError, match="range declared for 'b'"):
        spec_from_mapping({**base, "ranges": {"b": [0, 1]}})
    with pytest.raises(DeclarationError, match="declared both numeric and categorical"):
        spec_from_mapping({**base, "categorical": ["a"]})
    with pytest.raises(DeclarationError, match="not a duration"):
        parse_duration("3 fortnights")
    with pytest.raises(DeclarationError, match="thousands mark"):
        CsvDialect(decimal=",", thousands=",")
    spec = spec_from_mapping(base)  # no time: windows default to batches
    assert spec.windows == "batch" and spec.timestamp is None and spec.horizon == timedelta(0)


def test_yaml_yes_no_stay_text(churn):
    assert churn.target_labels == ("no", "yes")


# ------------------------------------------------------------------ a dataset without time


def test_churn_is_declared_without_time_and_read_in_batches(churn):
    assert churn.timestamp is None and churn.windows == "batch"
    assert churn.key_columns == ("customer_id",)
    assert churn.ordering == ("window", "source_line")
    found = batches(churn)
    assert list(found) == ["batch_01", "batch_02", "batch_03", "batch_04"]
    batch = read_batch(churn, found["batch_02"])
    assert batch.window == "batch_02"
    assert batch.columns["tenure_months"] == "Tenure (months)"
    assert batch.columns["region"] == "Región"
    df = read_declared(churn)
    assert df.columns == [
        "customer_id", "window", "tenure_months", "monthly_fee", "support_calls", "data_usage_gb",
        "plan", "region", "payment_method", "churned", "source_file", "source_sha256",
        "source_line"]
    assert df.height == 2000 and df["customer_id"].n_unique() == 2000
    assert df.group_by("window").len().sort("window")["len"].to_list() == [500] * 4
    assert df.schema["tenure_months"] == pl.Int64 and df.schema["monthly_fee"] == pl.Float64
    assert df["churned"].is_in([0, 1]).all()
    assert 0.04 <= df["churned"].mean() <= 0.06
    assert df["data_usage_gb"].null_count() > 0  # declared nullable, and it happens


def test_unknown_target_label_is_structural(churn, tmp_path):
    path = tmp_path / "batch_09.csv"
    text = (HERE / "data" / "churn" / "batches" / "batch_01.csv").read_text(encoding="utf-8")
    lines = text.splitlines()
    lines[5] = lines[5].rsplit(",", 1)[0] + ",maybe"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(StructuralError, match=r"batch_09\.csv, line 6, column 'churned': "
                                              r"expected 'no' or 'yes', found 'maybe'"):
        read_source(churn, path)


def test_missing_declared_column_is_structural(churn, tmp_path):
    path = tmp_path / "batch_05.csv"
    read_source(churn, source_paths(churn)[0]).drop("plan", "window", "source_file",
                                                    "source_sha256", "source_line").write_csv(path)
    with pytest.raises(StructuralError,
                       match=r"batch_05\.csv, line 1, column 'plan': expected a column 'plan'"):
        read_source(churn, path)


def test_folder_parquet_and_delta_sources_read_alike(churn, tmp_path):
    csv_rows = read_declared(churn)
    data = ["customer_id", "tenure_months", "monthly_fee", "plan", "churned"]

    folder = tmp_path / "landing"
    folder.mkdir()
    for path in source_paths(churn)[:2]:
        shutil.copy(path, folder / path.name)
    as_folder = spec_from_mapping({**_churn_mapping(), "source": {"path": str(folder)}})
    assert [p.name for p in source_paths(as_folder)] == ["batch_01.csv", "batch_02.csv"]
    assert read_declared(as_folder).select(data).equals(csv_rows.head(1000).select(data))

    frame = csv_rows.drop("window", "source_file", "source_sha256", "source_line")
    frame = frame.with_columns(pl.when(pl.col("churned") == 1).then(pl.lit("yes"))
                               .otherwise(pl.lit("no")).alias("churned"))
    frame.write_parquet(tmp_path / "all.parquet")
    as_parquet = spec_from_mapping({**_churn_mapping(),
                                    "source": {"path": str(tmp_path / "all.parquet")}})
    assert as_parquet.source.format == "parquet"
    got = read_declared(as_parquet)
    assert got.select(data).equals(csv_rows.select(data))
    assert got["window"].unique().to_list() == ["all"]
    assert got["source_line"].to_list()[:2] == [1, 2]

    uri = str(tmp_path / "delta_source")
    write_deltalake(uri, frame.to_arrow())
    as_delta = spec_from_mapping({**_churn_mapping(), "source": {"uri": uri, "format": "delta"}})
    got = read_declared(as_delta)
    assert got.select(data).equals(csv_rows.select(data))  # sorted by the key, customer_id
    assert got["source_line"].to_list()[:2] == [1, 2]
    assert got["window"].unique().to_list() == ["v0"] and list(batches(as_delta)) == ["v0"]


def _churn_mapping() -> dict:
    import yaml

    from mlops_assets.datasets import _yaml_loader

    return yaml.load(CHURN_YAML.read_text(encoding="utf-8"), Loader=_yaml_loader())


def test_batch_names_are_partition_safe():
    assert batch_name("/x/Batch 01.csv") == "batch_01"
    assert batch_name("2024-05-01 export.csv.gz") == "2024_05_01_export"


def test_a_timestamped_declaration_cuts_monthly_windows_and_refuses_bad_times(tmp_path):
    decl = tmp_path / "meters.yaml"
    decl.write_text(
        "name: meters\ntarget: alarm\ntimestamp: read_at\nids: [meter]\n"
        "numeric: [kwh]\ncategorical: [site]\nsource: {path: meters.csv}\n"
        "windows: {kind: monthly, start: 2024-01}\n", encoding="utf-8")
    (tmp_path / "meters.csv").write_text(
        "Meter,Read At,kWh,Site,Alarm\n"
        "m1,2024-01-31T23:30:00Z,1.5,north,0\n"
        "m1,2024-02-01T00:30:00+01:00,2.5,,1\n"
        "m2,2024-02-01 00:30:00,3.5,south,0\n", encoding="utf-8")
    spec = load_declaration(decl)
    assert spec.window_start == date(2024, 1, 1) and spec.key_columns == ("meter", "read_at")
    df = read_source(spec, spec.source.location)
    assert df.columns[:3] == ["read_at", "meter", "window"]
    # +01:00 is converted to UTC (still January); a time without zone is taken as UTC
    assert df["window"].to_list() == ["2024-01", "2024-01", "2024-02"]
    assert df["site"].to_list() == ["north", None, "south"]
    (tmp_path / "meters.csv").write_text(
        "Meter,Read At,kWh,Site,Alarm\nm1,2024-01-31T23:30:00Z,1.5,north,0\n"
        "m1,31/01/2024,2.5,north,1\n", encoding="utf-8")
    with pytest.raises(StructuralError, match=r"meters\.csv, line 3, column 'read_at': expected "
                                              r"an ISO date-time.*found '31/01/2024'"):
        read_source(spec, spec.source.location)


def test_ordering_column_and_quote_char_without_time(tmp_path):
    (tmp_path / "events.tsv").write_text(
        "Seq\tNote\tScore\tHit\n3\t'a\tb'\t1,5\t1\n1\t'c'\t2\t0\n", encoding="utf-8")
    spec = spec_from_mapping({
        "name": "events", "target": "hit", "order": "seq", "numeric": ["score"],
        "categorical": ["note"], "windows": "batch",
        "source": {"path": "events.tsv", "dialect": {"separator": "\t", "quote": "'",
                                                    "decimal": ","}},
    }, base_dir=tmp_path)
    assert spec.key_columns == ("seq",) and spec.ordering == ("seq",)
    df = read_source(spec, spec.source.location)
    assert df.columns[:2] == ["seq", "window"]
    assert df.select("seq", "note", "score", "window").rows() == [
        (3, "a\tb", 1.5, "events"), (1, "c", 2.0, "events")]
