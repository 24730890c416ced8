"""Code versions follow the code that computes an asset, not its comments; data versions follow
the Delta commits a write makes."""

import sys

import polars as pl

from mlops_assets.versions import asset_code_version, delta_data_version, source_digest

MODULE = '''"""A module."""

def f(x):
    """Doubles."""
    return 2 * x  # twice
'''


def _digest(tmp_path, monkeypatch, name: str, text: str) -> str:
    (tmp_path / f"{name}.py").write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    return source_digest(name)


def test_source_digest_ignores_docstrings_comments_and_layout(tmp_path, monkeypatch):
    base = _digest(tmp_path, monkeypatch, "cv_base", MODULE)
    reworded = MODULE.replace("Doubles.", "Returns twice x.").replace("# twice", "")
    assert _digest(tmp_path, monkeypatch, "cv_reworded", reworded) == base
    relaid = MODULE.replace("return 2 * x", "return (2\n            * x)")
    assert _digest(tmp_path, monkeypatch, "cv_relaid", relaid) == base
    assert _digest(tmp_path, monkeypatch, "cv_changed", MODULE.replace("2 * x", "3 * x")) != base
    assert "cv_base" not in sys.modules  # read from source, never imported


def test_asset_code_version_follows_modules_libraries_and_declaration(tmp_path):
    decl = tmp_path / "d.yaml"
    decl.write_text("name: a\n")
    base = asset_code_version(["mlops_assets.features"], ["polars"], str(decl))
    assert len(base) == 12
    assert asset_code_version(["mlops_assets.features"], ["polars"], str(decl)) == base
    assert asset_code_version(["mlops_assets.training"], ["polars"], str(decl)) != base
    assert asset_code_version(["mlops_assets.features"], ["lightgbm"], str(decl)) != base
    other = tmp_path / "e.yaml"
    other.write_text("name: b\n")
    assert asset_code_version(["mlops_assets.features"], ["polars"], str(other)) != base


def test_delta_data_version_changes_with_each_commit_and_not_without_one(tmp_path):
    from mlops_assets.tables import write_table

    uri = str(tmp_path / "t")
    frame = pl.DataFrame({"a": [1, 2]})
    first = delta_data_version(write_table(uri, frame))
    second = delta_data_version(write_table(uri, frame, mode="overwrite"))
    empty = delta_data_version(write_table(uri, frame.head(0)))
    assert first.value.startswith("delta:v0@") and second.value.startswith("delta:v1@")
    assert empty == second  # nothing committed: same data
