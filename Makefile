# Quick start: `make demo` and `make test` each create .venv and install what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test check lint typecheck protos bench clean browser screenshots

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/invsync demo --workdir demo-work

test: $(STAMP) lint typecheck browser
	$(BIN)/pytest -q

# The headless browser tests/test_report_browser.py lays the HTML report out in (Debian's
# chromium; CI runs as root). The test fails naming chromium when it is still missing.
browser:
	command -v chromium >/dev/null || (apt-get update -q && apt-get install -y -q chromium)

# Regenerates docs/screenshots/report-{desktop,phone}.png from the demo's report.
screenshots: $(STAMP) browser
	$(BIN)/python -m scripts.screenshots docs/screenshots

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# Regenerates the committed protocol code; tests/test_protos.py fails when this would change it.
protos: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m grpc_tools.protoc -Iprotos \
		--python_out=protos --grpc_python_out=protos \
		--mypy_out=protos --mypy_grpc_out=protos \
		protos/invsync/v1/invsync.proto

clean:
	rm -rf $(VENV) demo-work build *.egg-info protos/*.egg-info
