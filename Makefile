# make preview - set up, then run the program's main job offline on the dev stack
# make test    - set up, then ruff, mypy and pytest
# make lab     - as root: the host lab for STACK (dev|ha): apply over real SSH into network-namespace hosts
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STACK ?= dev

.PHONY: setup tools preview test lint lab benchmark clean

$(VENV)/.installed: requirements.txt requirements-dev.txt policy/requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt -r requirements-dev.txt -r policy/requirements.txt
	touch $@

setup: $(VENV)/.installed

tools:
	@bash .ci/install-tools

preview: setup tools
	$(PY) -m offline preview --stack $(STACK)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test: setup tools lint
	$(VENV)/bin/pytest

lab: setup tools
	$(PY) -m lab --stack $(STACK)

benchmark: setup tools
	$(PY) -m benchmarks

clean:
	rm -rf build .pytest_cache .mypy_cache .ruff_cache
