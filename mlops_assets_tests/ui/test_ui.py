"""The Dagster UI as a person uses it, in a real headless Chromium against a real ``dagster dev``.

Each assertion reads what the page shows after its JavaScript has rendered (the DOM's text,
links and switches) and checks it against the source of truth: the Delta tables, the MLflow
store, and Dagster's GraphQL API. The materialization is started by clicking the asset page's
*Materialize* button. Screenshots of the pages go to ``MLOPS_UI_SCREENSHOTS``.

Run with ``make test-ui`` (or ``MLOPS_UI_TESTS=1 pytest mlops_assets_tests/ui``).
"""

import json
import re
import sqlite3
import struct
import time
from pathlib import Path

import pytest
from deltalake import DeltaTable

pytestmark = pytest.mark.ui

GROUPS = {
    "ingestion": ["raw/elec2"],
    "transform": ["stg_elec2", "daily_market"],
    "features": ["features"],
    "training": ["training_set", "hyperparameters", "model", "evaluation"],
    "registry": ["champion"],
    "scoring": ["predictions"],
    "monitoring": ["drift_report", "model_performance"],
}
# Checks shown on their asset's Checks tab: asset path in the URL -> check name.
CHECKS = {
    "raw/elec2": "raw_schema",
    "features": "features_schema",
    "evaluation": "promotion_gate",
    "drift_report": "no_data_drift",
    "model_performance": "champion_performance",
}
SENSORS = ("retrain_on_failed_checks", "landing_files")
MODAL = "Join the Dagster community"
MAX_PNG_BYTES = 400_000

# Rows of the asset page's metadata table as {key: {"text": ..., "links": [...]}}.
METADATA_JS = """(() => {
  const out = {};
  for (const table of document.querySelectorAll('table')) {
    const head = Array.from(table.querySelectorAll(':scope > thead > tr > td, :scope > thead > tr > th')).map(th => th.innerText.trim());
    if (head[0] !== 'Key' || !head.includes('Value')) continue;
    for (const row of table.querySelectorAll(':scope > tbody > tr')) {
      const cells = row.querySelectorAll(':scope > td');
      if (cells.length < 2) continue;
      const value = cells[cells.length - 1];
      out[cells[0].innerText.trim()] = {
        text: value.innerText.trim(),
        links: Array.from(value.querySelectorAll('a[href]')).map(a => a.href)};
    }
  }
  return out; })()"""
# Column names in the asset page's schema table.
COLUMNS_JS = """(() => {
  for (const table of document.querySelectorAll('table')) {
    const head = Array.from(table.querySelectorAll(':scope > thead > tr > td, :scope > thead > tr > th')).map(th => th.innerText.trim());
    if (head[0] === 'Column name')
      return Array.from(table.querySelectorAll(':scope > tbody > tr')).map(r => r.querySelector(':scope > td').innerText.trim());
  }
  return null; })()"""
# Names shown inside the lineage graph's SVG (asset and group nodes).
GRAPH_TEXT_JS = """Array.from(document.querySelectorAll('svg foreignObject'))
  .map(e => e.textContent).join('\\n')"""


# ------------------------------------------------------------------------------------ helpers


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def _shoot(browser, folder: Path, name: str, **kwargs) -> Path:
    assert MODAL not in browser.text(), "the community modal would cover the screenshot"
    path = browser.screenshot(folder / name, **kwargs)
    size = path.stat().st_size
    width, height = _png_size(path)
    assert 10_000 < size < MAX_PNG_BYTES, f"{name}: {size} bytes"
    assert width >= 1000 and height >= 250, f"{name}: {width}x{height}"
    return path


def _open(browser, server, path: str, *needles: str, timeout: float = 90) -> str:
    browser.resize(1440, 900)
    browser.goto(server.base + path)
    return browser.wait_for_text(*needles, timeout=timeout)


def _metadata(browser) -> dict:
    return browser.wait_for(f"(() => {{ const m = {METADATA_JS}; return Object.keys(m).length ? m : null; }})()",
                            timeout=60, what="the metadata table")


def _delta(home: Path, *parts: str) -> DeltaTable:
    return DeltaTable(str(home.joinpath("delta", *parts)))


# --------------------------------------------------------------------------------- the session


@pytest.fixture(scope="session")
def page(server, browser):
    """The browser on the UI, past the first-visit "Join the Dagster community" modal: it is
    dismissed with its own Skip button, as a person would."""
    if server.gql("{ shouldShowNux }")["shouldShowNux"]:
        _open(browser, server, "/asset-groups", MODAL, timeout=120)
        assert browser.click_text("Skip"), "no Skip button on the community modal"
        browser.wait_for(f"!document.body.innerText.includes({json.dumps(MODAL)})", 20, what="modal gone")
        assert server.gql("{ shouldShowNux }")["shouldShowNux"] is False
    # The left navigation collapsed, for wider screenshots.
    browser.send("Page.addScriptToEvaluateOnNewDocument", {
        "source": "try { localStorage.setItem('dagster-nav-collapsed', 'true'); } catch (e) {}"})
    yield browser
    # Everything the page loaded came from the local server: no CDN, fonts or telemetry.
    browser.eval("1")  # drain pending protocol events
    assert any(u.startswith(server.base + "/") for u in browser.requests), "no requests were recorded"
    foreign = [u for u in browser.requests
               if not u.startswith((server.base + "/", "data:", "blob:", "about:"))]
    assert not foreign, f"the UI requested other hosts: {sorted(set(foreign))[:10]}"


def test_asset_graph_shows_every_group_and_asset(page, server, shots):
    _open(page, server, "/asset-groups", "Global asset lineage", *GROUPS)
    graph = page.wait_for(f"(() => {{ const t = {GRAPH_TEXT_JS}; return {json.dumps(list(GROUPS))}"
                          ".every(g => t.includes(g)) ? t : ''; })()", 60, what="group nodes in the graph")
    assert all(g in graph for g in GROUPS)

    # The groups as Dagster knows them: each asset in its stage's group.
    nodes = server.gql("{ assetNodes { assetKey { path } groupName } }")["assetNodes"]
    group_of = {"/".join(n["assetKey"]["path"]): n["groupName"] for n in nodes}
    for group, keys in GROUPS.items():
        for key in keys:
            assert group_of.get(key) == group, f"{key}: group {group_of.get(key)!r}, expected {group!r}"

    # Hide the group list, then expand every group (the graph's own shortcut, Alt+E): the graph
    # lays itself out again over the full width and shows every asset inside its group.
    page.resize(1600, 760)
    assert page.click_icon("panel_show_right"), "no sidebar toggle"
    names = [k.split("/")[-1] for keys in GROUPS.values() for k in keys]
    expanded = f"(() => {{ const t = {GRAPH_TEXT_JS}; return {json.dumps(names)}.every(n => t.includes(n)); }})()"
    if page.eval(expanded):  # already expanded (a remembered state): collapse first
        page.press("e", "KeyE", 69, modifiers=1)
        page.wait_for(f"!{expanded}", 30, what="groups collapsed")
    page.press("e", "KeyE", 69, modifiers=1)
    page.wait_for(expanded, 60, what="asset nodes after expanding the groups")
    time.sleep(1.5)  # the viewport animates to its new fit
    _shoot(page, shots, "ui_lineage.png")


def test_drift_report_page_shows_rows_schema_version_and_report(page, server, ui_home, shots):
    text = _open(page, server, "/assets/drift_report", "Row count", "Columns", "report_url")
    table = _delta(ui_home, "monitoring", "drift")
    rows = table.to_pyarrow_table().num_rows

    shown = re.search(r"Row count\s+([\d,]+)", text)
    assert shown, "no row count on the page"
    assert int(shown.group(1).replace(",", "")) == rows

    columns = page.wait_for(COLUMNS_JS, 30, what="the column schema")
    assert columns == [f.name for f in table.schema().fields]

    meta = _metadata(page)
    assert int(meta["delta_version"]["text"]) == table.version()
    assert meta["verdict"]["text"] in ("no drift", "DRIFT")
    # The report is a file under the home and, for browsers, an artifact in the MLflow UI.
    report = meta["report_url"]["links"]
    assert report and report[0].startswith("http://127.0.0.1:5000/#/experiments/"), meta["report_url"]
    html = Path(meta["report"]["text"])
    assert html.is_file() and html.suffix == ".html" and report[0].endswith(html.name)
    body = html.read_text(errors="replace")
    assert body.lstrip().lower().startswith("<!doctype html") and "Drifted Columns" in body

    # Two views of the page: the top (status, row count, schema), then its metadata (Delta
    # version, verdict, per-column drift, the report's link), scrolled to the section's heading.
    page.resize(1440, 1000)
    _shoot(page, shots, "ui_drift_report.png")
    page.resize(1440, 1400)
    visible = page.eval("""(() => {
      const heading = Array.from(document.querySelectorAll('div, span, h1, h2, h3, h4'))
        .find(e => e.childElementCount === 0 && e.innerText.trim() === 'Metadata');
      if (!heading) return null;
      heading.scrollIntoView({block: 'start'});
      const link = document.querySelector('a[href*="/artifacts/drift/"]');
      if (!link) return null;
      const r = link.getBoundingClientRect();
      return r.top > 0 && r.bottom < window.innerHeight; })()""")
    assert visible, "the report link does not fit below the metadata heading"
    _shoot(page, shots, "ui_drift_metadata.png")


def test_model_page_links_its_mlflow_run_and_version(page, server, ui_home, shots):
    _open(page, server, "/assets/model", "Latest materialization", "mlflow_run", "mlflow_model")
    meta = _metadata(page)
    run_id = meta["mlflow_run_id"]["text"]
    run_link = meta["mlflow_run"]["links"]
    model_link = meta["mlflow_model"]["links"]
    assert run_link and re.fullmatch(rf"http://127\.0\.0\.1:\d+/#/experiments/\d+/runs/{run_id}", run_link[0])
    name, version = meta["model_name"]["text"], int(meta["model_version"]["text"])
    assert model_link and model_link[0].endswith(f"/#/models/{name}/versions/{version}")

    # The links name a real run and a real registered version in the MLflow store.
    with sqlite3.connect(ui_home / "mlflow" / "mlflow.db") as db:
        assert db.execute("select status from runs where run_uuid = ?", (run_id,)).fetchone() == ("FINISHED",)
        assert db.execute("select run_id from model_versions where name = ? and version = ?",
                          (name, version)).fetchone() == (run_id,)
    # ... trained on a Delta version of the training set that exists.
    assert 0 <= int(meta["training_set_delta_version"]["text"]) <= _delta(ui_home, "training_set", "elec2").version()
    _shoot(page, shots, "ui_model.png")


def test_checks_show_their_state(page, server, shots):
    nodes = server.gql("""{ assetNodes { assetKey { path } assetChecksOrError { ... on AssetChecks {
        checks { name blocking executionForLatestMaterialization { status } } } } } }""")["assetNodes"]
    state = {}
    for node in nodes:
        for check in node["assetChecksOrError"].get("checks", []):
            execution = check["executionForLatestMaterialization"]
            state[("/".join(node["assetKey"]["path"]), check["name"])] = (
                check["blocking"], execution and execution["status"])
    # Every check (the 21 dbt tests included) has run; the blocking ones passed, or the graph
    # would not have been materialized downstream of them.
    assert len(state) >= 5 + 21
    assert all(status in ("SUCCEEDED", "FAILED") for _, status in state.values()), state
    assert all(status == "SUCCEEDED" for blocking, status in state.values() if blocking), state

    label = {"SUCCEEDED": "Passed", "FAILED": "Failed"}
    for asset, check in CHECKS.items():
        blocking, status = state[(asset, check)]
        text = _open(page, server, f"/assets/{asset}?view=checks", check, "Evaluation result", "Latest execution")
        shown = re.search(r"Evaluation result\s+(\w+)", text)
        assert shown and shown.group(1) == label[status], f"{asset}:{check}: page shows {shown and shown.group(1)}, GraphQL {status}"
        assert ("This is a blocking asset check." in text) == blocking
        if asset == "drift_report":
            _shoot(page, shots, "ui_checks.png")


def test_materialize_from_the_asset_page(page, server, ui_home):
    """Click *Materialize* on ``features``; the run the UI launches succeeds and writes a new
    Delta version, which the page then shows."""
    table = _delta(ui_home, "features", "elec2")
    before_version = table.version()
    runs_query = """{ runsOrError(filter: {tags: [{key: "dagster/from_ui", value: "true"}]}) {
        ... on Runs { results { runId status assetSelection { path } } } } }"""
    before = {r["runId"] for r in server.gql(runs_query)["runsOrError"]["results"]}

    _open(page, server, "/assets/features", "Latest materialization", "Materialize")
    assert page.click_text("Materialize"), "no Materialize button"
    # The toast the person sees names the run.
    toast = page.wait_for_text("Launched run", timeout=60)
    launched = re.search(r"Launched run (\w+)", toast).group(1)

    deadline = time.monotonic() + 60
    while True:
        new = [r for r in server.gql(runs_query)["runsOrError"]["results"] if r["runId"] not in before]
        if new:
            break
        assert time.monotonic() < deadline, "clicking Materialize launched no run"
        time.sleep(0.5)
    assert len(new) == 1 and new[0]["assetSelection"] == [{"path": ["features"]}], new
    run_id = new[0]["runId"]
    assert run_id.startswith(launched), (launched, run_id)

    deadline = time.monotonic() + 300
    while True:
        status = server.gql("query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }",
                            {"id": run_id})["runOrError"]["status"]
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            break
        assert time.monotonic() < deadline, f"run {run_id} still {status}"
        time.sleep(1)
    assert status == "SUCCESS", f"run {run_id}: {status}\n{server.log_tail()}"

    # The run's page says so, and the asset page shows the new Delta version.
    _open(page, server, f"/runs/{run_id}", "Success", run_id[:8])
    after_version = _delta(ui_home, "features", "elec2").version()
    assert after_version == before_version + 1
    _open(page, server, "/assets/features", "Latest materialization")
    page.wait_for(f"(() => {{ const m = {METADATA_JS}; return m.delta_version && m.delta_version.text === "
                  f"{json.dumps(str(after_version))}; }})()", 60, what=f"delta_version {after_version}")


def test_sensors_page_shows_both_sensors_running(page, server, shots):
    text = _open(page, server, "/automation", *SENSORS)
    assert "mlops_assets" in text
    # Each sensor's row has a selection box on the left and its on/off switch on the right (a
    # disabled placeholder until the sensor's state has loaded).
    switches = page.wait_for("""(() => {
      const out = {};
      for (const input of document.querySelectorAll('input[type=checkbox]')) {
        let row = input.parentElement;
        while (row && !row.innerText.trim()) row = row.parentElement;
        const name = row ? row.innerText.trim().split('\\n')[0] : '';
        const boxes = row ? row.querySelectorAll('input[type=checkbox]') : [];
        const toggle = boxes[boxes.length - 1];
        if (%s.includes(name) && boxes.length >= 2 && !toggle.disabled) out[name] = toggle.checked;
      }
      return Object.keys(out).length === %d ? out : null; })()""" % (json.dumps(list(SENSORS)), len(SENSORS)),
        60, what="the sensors' switches")
    assert switches == {s: True for s in SENSORS}, switches

    states = server.gql("""{ repositoriesOrError { ... on RepositoryConnection { nodes {
        sensors { name sensorState { status } } } } } }""")
    sensors = {s["name"]: s for repo in states["repositoriesOrError"]["nodes"] for s in repo["sensors"]}
    assert {name: sensors[name]["sensorState"]["status"] for name in SENSORS} == {s: "RUNNING" for s in SENSORS}
    page.resize(1440, 320)
    _shoot(page, shots, "ui_sensors.png")

    # The daemon ticks them under `dagster dev`; the sensor's own page shows it running.
    tick_query = """query($name: String!) { sensorOrError(sensorSelector: {repositoryName: "__repository__",
        repositoryLocationName: "mlops_assets", sensorName: $name}) { ... on Sensor { sensorState {
        ticks(limit: 1) { status } } } } }"""
    deadline = time.monotonic() + 120
    while True:
        latest = {name: server.gql(tick_query, {"name": name})["sensorOrError"]["sensorState"]["ticks"]
                  for name in SENSORS}
        if all(latest.values()):
            break
        assert time.monotonic() < deadline, f"no sensor tick within 120 s: {latest}"
        time.sleep(2)
    assert all(latest[name][0]["status"] in ("SKIPPED", "SUCCESS") for name in SENSORS), latest
    text = _open(page, server, "/locations/mlops_assets/sensors/retrain_on_failed_checks",
                 "Latest tick", "Running", "Retrains, evaluates")
    assert "runs requested" in text or "Skipped" in text
    _shoot(page, shots, "ui_sensor_retrain.png")
