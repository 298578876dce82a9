# crm-bridge: `make serve` and `make test` are the two set-up commands (README).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 5000

.PHONY: install serve test bench lint fmt clean live-check

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,redis]'
	touch $@

install: $(VENV)/.installed

serve: install
	BRIDGE_WORKER=inline $(VENV)/bin/crm-bridge serve --host $(HOST) --port $(PORT)

test: install
	$(VENV)/bin/lint-imports
	$(PY) -m pytest

bench: install
	@command -v wrk >/dev/null 2>&1 || { echo "installing wrk (the benches' load generator)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq wrk >/dev/null; }
	$(PY) bench/run_all.py

# Against the real FluentCRM of the wp-peer (shared/peer/setup.sh); not part of `make test`.
live-check: install
	$(PY) live/check_fluentcrm.py

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff format --check .

fmt: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
