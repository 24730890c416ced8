"""Fixtures of the browser test: a materialized home, a real ``dagster dev`` and headless Chromium.

Everything here is marked ``ui`` and skipped unless ``MLOPS_UI_TESTS=1`` (``make test-ui`` sets
it), so ``make test`` never starts a browser. Environment knobs:

``MLOPS_UI_HOME``         reuse (or fill once) this home instead of a temporary one
``MLOPS_UI_SCREENSHOTS``  where the PNGs go (default: a temporary folder, printed at the end)
``MLOPS_CHROMIUM``        the browser executable (default: ``chromium`` on PATH)
``MLOPS_UI_PORT``         while writing tests: use the ``dagster dev`` already serving
                          ``MLOPS_UI_HOME`` on this 127.0.0.1 port instead of starting one
"""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ui_browser import Browser, find_chromium
from ui_server import DagsterDev

PROJECT_ROOT = Path(__file__).resolve().parents[2]
UI_FLAG = "MLOPS_UI_TESTS"
DEMO_ARGS = ["--trials", "3", "--replay-through", "1996-09"]
# Variables of the outer test session that would point the server away from its own home.
_OVERRIDES = ("DAGSTER_HOME", "MLOPS_DELTA_ROOT", "MLOPS_DUCKDB_PATH", "MLFLOW_TRACKING_URI",
              "MLOPS_MLFLOW_TRACKING_URI",
              "MLOPS_OPTUNA_STORAGE", "MLOPS_MLFLOW_ARTIFACTS", "MLOPS_DBT_TARGET_PATH",
              "MLOPS_LANDING_DIR")

TIMINGS: dict[str, float] = {}


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "ui: drives `dagster dev` in headless Chromium; runs only with MLOPS_UI_TESTS=1 (make test-ui)")


def pytest_collection_modifyitems(config, items):
    if os.environ.get(UI_FLAG) == "1":
        return
    skip = pytest.mark.skip(reason=f"browser test: run `make test-ui` or set {UI_FLAG}=1")
    for item in items:
        if item.get_closest_marker("ui"):
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter):
    if TIMINGS:
        terminalreporter.write_sep("-", "browser test timings")
        for name, secs in TIMINGS.items():
            terminalreporter.write_line(f"{name:<28} {secs:7.1f} s")


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _OVERRIDES}
    env.update({
        "MLOPS_HOME": str(home),
        "DAGSTER_HOME": str(home / "dagster"),
        "MLOPS_DBT_TARGET_PATH": str(home / "dbt_target"),
        "DAGSTER_DISABLE_TELEMETRY": "1",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "PYTHONUNBUFFERED": "1",
    })
    return env


@pytest.fixture(scope="session")
def ui_home(tmp_path_factory) -> Path:
    """A home with the whole graph materialized on a slice (May–Aug 1996, one replayed month)."""
    given = os.environ.get("MLOPS_UI_HOME")
    home = Path(given).resolve() if given else tmp_path_factory.mktemp("ui_home")
    if (home / "delta" / "monitoring" / "drift").exists():
        return home
    # The data file is verified by sha256 either way; copying a local one saves a download.
    local = PROJECT_ROOT / ".mlops_home" / "downloads" / "elec2.csv"
    if local.exists():
        (home / "downloads").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(local, home / "downloads" / "elec2.csv")
    log = home / "logs" / "ui_demo.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with open(log, "wb") as out:
        done = subprocess.run([sys.executable, "-m", "mlops_assets.cli", "demo", *DEMO_ARGS],
                              cwd=PROJECT_ROOT, env=_env(home), stdout=out, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, timeout=1200)
    TIMINGS["demo (materialize slice)"] = time.monotonic() - t0
    if done.returncode != 0:
        pytest.fail(f"demo failed ({done.returncode}); last output:\n{log.read_text()[-4000:]}")
    return home


@pytest.fixture(scope="session")
def server(ui_home):
    """``dagster dev`` over ``ui_home`` on a free 127.0.0.1 port; always stopped by PID."""
    port = os.environ.get("MLOPS_UI_PORT")
    dev = DagsterDev(PROJECT_ROOT, _env(ui_home), ui_home / "logs" / "dagster_dev.log",
                     port=int(port) if port else None)
    if port:
        yield dev
        return
    dev.start()
    try:
        TIMINGS["dagster dev ready"] = dev.wait_ready()
        yield dev
    finally:
        t0 = time.monotonic()
        dev.stop()
        TIMINGS["dagster dev stop"] = time.monotonic() - t0
        if dev.leftovers:
            import warnings

            warnings.warn(f"dagster dev left processes behind after SIGTERM; killed {dev.leftovers}")


@pytest.fixture(scope="session")
def browser():
    exe = find_chromium()
    if exe is None:
        pytest.fail("no chromium on PATH: `make test-ui` installs Debian's chromium "
                    "(apt-get install chromium chromium-driver)")
    with Browser(exe) as b:
        yield b


@pytest.fixture(scope="session")
def shots(tmp_path_factory, request) -> Path:
    given = os.environ.get("MLOPS_UI_SCREENSHOTS")
    folder = Path(given).resolve() if given else tmp_path_factory.mktemp("ui_screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    request.config.add_cleanup(lambda: print(f"\nscreenshots: {folder}"))
    return folder
