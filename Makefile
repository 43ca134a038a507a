# The README's two commands: `make run` and `make test`. Everything else is a helper target.
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DVC_NO_ANALYTICS := 1
export DO_NOT_TRACK := 1
export MPLBACKEND := Agg

.PHONY: run test install bench ui view prefect prefect-stop prefect-status clean-venv help

help:  ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/'

$(BIN)/python:
	$(PY) -m venv $(VENV)

# Reinstall only when pyproject.toml changes; torch comes from this machine's local wheel store via pip.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install asn with its pinned dependencies

run: $(STAMP)  ## set up and run the default pipeline (dvc repro) on the embedded synthetic data
	@test -d .dvc || $(BIN)/dvc init -q $$(git rev-parse --git-dir >/dev/null 2>&1 || echo --no-scm)
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/dvc repro

# pytest exits 5 when it collected no test: that is a failure here, never a pass.
# PYTEST_ARGS selects tests, e.g. `make test PYTEST_ARGS="-k convert"`.
test: $(STAMP)  ## run the whole test suite
	@$(BIN)/python -m pytest -n 2 --dist loadscope -q --durations=15 $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi; exit $$rc

UI_PORT ?= 5000
MLFLOW_STORE := $(if $(MLFLOW_TRACKING_URI),$(MLFLOW_TRACKING_URI),sqlite:///$(CURDIR)/mlflow.db)

# Browse every run: one MLflow experiment per table, one run per (variant, seed).
ui: $(STAMP)  ## browse the MLflow runs (mlflow ui on 127.0.0.1:UI_PORT, default 5000)
	@case "$(MLFLOW_STORE)" in http*) echo "MLFLOW_TRACKING_URI is a server: open $(MLFLOW_STORE)"; exit 0;; esac; \
	echo "MLflow UI at http://127.0.0.1:$(UI_PORT) (store $(MLFLOW_STORE)); Ctrl-C stops it"; \
	MLFLOW_DISABLE_TELEMETRY=true $(BIN)/mlflow ui --backend-store-uri "$(MLFLOW_STORE)" --host 127.0.0.1 --port $(UI_PORT)

# The static viewer (asn view): the test split's images, ground truth and VIEW_RUN's predictions,
# with the scene-order figures of the first VIEW_FIGURES images for the report (reports/figures).
VIEW_RUN ?= reports/eval/mrcnn_asn-0
VIEW_PORT ?= 8000
VIEW_FIGURES ?= 3
view: $(STAMP)  ## build the browser viewer of VIEW_RUN (default reports/eval/mrcnn_asn-0) into reports/view and serve it on 127.0.0.1:VIEW_PORT (default 8000)
	$(BIN)/asn view --gt data/normalized --split test --images data/raw/testing/image_2 --run $(VIEW_RUN) \
		--out reports/view --figures $(VIEW_FIGURES) --figures-out reports/figures
	@echo "viewer: http://127.0.0.1:$(VIEW_PORT)/index.html (or open file://$(CURDIR)/reports/view/index.html); Ctrl-C stops the server"
	$(BIN)/python -m http.server $(VIEW_PORT) --bind 127.0.0.1 --directory reports/view

bench: $(STAMP)  ## run the benchmark scripts; JSON lands in reports/bench/
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

# Prefect for the ablation sweeps (pipelines/ablation.py, prefect.yaml): a local server on
# 127.0.0.1 with its sqlite database, logs and PIDs in .prefect/ (git-ignored), the process work
# pool asn-local, every deployment of prefect.yaml, and one worker; all in the background.
PREFECT_PORT ?= 4200
PREFECT_WORKER_LIMIT ?= 1
PREFECT_LOCAL := PREFECT_HOME=$(CURDIR)/.prefect PREFECT_PORT=$(PREFECT_PORT) \
	ASN_PREFECT_WORKER_LIMIT=$(PREFECT_WORKER_LIMIT) PREFECT=$(BIN)/prefect PYTHON=$(BIN)/python \
	PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1

prefect: $(STAMP)  ## start a local Prefect server + worker and deploy the asn-ablation sweeps (PREFECT_PORT, default 4200)
	@$(PREFECT_LOCAL) bash pipelines/local_prefect.sh start

prefect-stop:  ## stop the Prefect server and worker that `make prefect` started
	@$(PREFECT_LOCAL) bash pipelines/local_prefect.sh stop

prefect-status:  ## is the local Prefect server / worker running?
	@$(PREFECT_LOCAL) bash pipelines/local_prefect.sh status

clean-venv:
	rm -rf $(VENV)
