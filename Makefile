# Two commands on a fresh machine (each sets up .venv on first use):
#   make demo   the main job on its CPU default: the whole LIMR loop in miniature (mini/, ~11 minutes)
#   make test   the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
OPENRLHF := openrlhf==0.11.2

.PHONY: setup demo demo-tiny demo-study selection-demo test lint data bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: requirements-cpu.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-cpu.txt
	$(PY) -m pip install -q --no-deps $(OPENRLHF)
	touch $@

demo: setup
	$(PY) mini/run.py --size default --out outputs/mini --overwrite

demo-tiny: setup
	$(PY) mini/run.py --size tiny --out outputs/mini-tiny --overwrite

demo-study: setup
	$(PY) mini/run.py --size default --seeds 0,1,2 --out outputs/mini-study --overwrite

selection-demo: setup
	$(PY) scripts/demo.py

test: setup
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

data: setup
	$(PY) data/prepare.py

bench: setup
	$(PY) benchmarks/bench_grader.py

clean:
	rm -rf $(VENV) outputs .pytest_cache
