# Two commands on a fresh machine: `make demo` and `make test`. Everything else is optional.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
MLOPS_HOME ?= $(CURDIR)/.mlops_home
export MLOPS_HOME
export DAGSTER_HOME ?= $(MLOPS_HOME)/dagster
export DAGSTER_DISABLE_TELEMETRY := 1
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := true
export DBT_SEND_ANONYMOUS_USAGE_STATS := false

STAMP := $(VENV)/.installed

.PHONY: install demo test ui mlflow-ui summary lock clean

# The environment, from the committed lock (exact versions and hashes). Bytecode is compiled at
# install time, as pip does and uv does not by default: otherwise every process (each CLI call,
# each test subprocess) compiles the libraries it imports again where .pyc files cannot be
# written (PYTHONDONTWRITEBYTECODE, a read-only venv); `mlops-assets trace` spent 1.6 s doing so.
# compileall covers the whole environment, so a venv installed before this step gets its bytecode
# too (the Makefile is a prerequisite for that); files already compiled cost a stat each. Files
# that are not Python 3.11 (templates in some packages) are skipped quietly.
$(STAMP): requirements.lock pyproject.toml Makefile
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@$(BIN)/python -m uv --version >/dev/null 2>&1 || $(BIN)/python -m pip install -q uv
	$(BIN)/python -m uv pip install --python $(BIN)/python --require-hashes -r requirements.lock
	$(BIN)/python -m uv pip install --python $(BIN)/python --no-deps -e .
	@echo "compiling bytecode"; $(BIN)/python -m compileall -qq -j 0 \
	    "$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" >/dev/null || true
	@touch $@

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/mlops-assets demo $(DEMO_ARGS)

test: $(STAMP)
	@$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

summary: $(STAMP)
	$(BIN)/mlops-assets summary

# The Dagster UI on 127.0.0.1:3000 over the same home the demo wrote.
ui: $(STAMP)
	@$(BIN)/python -c "from mlops_assets.settings import prepare_environment; prepare_environment()"
	exec $(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

# The MLflow UI on 127.0.0.1:5000 over the same tracking store.
mlflow-ui: $(STAMP)
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false exec $(BIN)/mlflow ui --backend-store-uri sqlite:///$(MLOPS_HOME)/mlflow/mlflow.db --host 127.0.0.1 --port 5000

# Re-resolve the lock after changing pyproject.toml (needs uv).
lock:
	$(BIN)/python -m uv pip compile pyproject.toml --extra dev --python-version 3.11 \
	    --generate-hashes --no-header --no-annotate -o requirements.lock

clean:
	rm -rf $(MLOPS_HOME)

# The browser test (mlops_assets_tests/ui): Debian's chromium, installed with apt-get if missing,
# drives a real `dagster dev` on 127.0.0.1 over a freshly materialized home. Screenshots go to
# UI_SCREENSHOTS (`make test-ui UI_SCREENSHOTS=$(CURDIR)/docs` refreshes the README's).
UI_SCREENSHOTS ?= $(MLOPS_HOME)/ui_screenshots
.PHONY: test-ui
test-ui: $(STAMP)
	@command -v $${MLOPS_CHROMIUM:-chromium} >/dev/null 2>&1 || { \
	    sudo=; [ "$$(id -u)" -eq 0 ] || sudo=sudo; \
	    echo "installing Debian's chromium with apt-get"; \
	    $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq chromium; }
	MLOPS_UI_TESTS=1 MLOPS_UI_SCREENSHOTS=$(UI_SCREENSHOTS) $(BIN)/python -m pytest mlops_assets_tests/ui $(PYTEST_ARGS)

# Benchmarks against the libraries and peers; writes docs/benchmarks.md. The full run (every
# target at its stated size, the main job and its 10M-row peak memory included) takes about 11
# minutes on a quiet 2-core machine; `make bench BENCH_ARGS=--quick` a few.
.PHONY: bench
bench: $(STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)
