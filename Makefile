# Set-up is idempotent: every target first makes sure .venv, the project and
# the Debian packages it needs are there.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
FMNIST_DIR := /usr/share/datasets/fashion-mnist
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTEST_ARGS ?=

.PHONY: setup venv data test-deps test demo lint clean

setup: venv data

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q -e '.[test]'
	touch $@

data:
	@if [ ! -f $(FMNIST_DIR)/train-images-idx3-ubyte.gz ]; then \
		echo "installing Debian's dataset-fashion-mnist"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq dataset-fashion-mnist; \
	fi

# Servers the tests use for real (sshd for the ssh runner, PostgreSQL for
# shared Optuna storage); the tests start throwaway instances on 127.0.0.1.
test-deps:
	@bash tests/setup/install_postgres.sh
	@if [ -f tests/setup/install_sshd.sh ]; then bash tests/setup/install_sshd.sh; fi

test: setup test-deps
	$(PY) -m pytest -q $(PYTEST_ARGS)

# The issue's example: a search on the built-in pixel target under 50 ms, on
# Fashion-MNIST, about 10 minutes on 2 cores; results land in results/<run>/.
demo: setup
	$(VENV)/bin/nas-search --target pixel --lat 50ms

lint: venv
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
