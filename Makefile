# Two commands on a fresh machine (each sets up .venv on first use):
#   make demo   the main job on its CPU default: the whole LIMR loop in miniature (mini/, ~5 minutes)
#   make test   the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
OPENRLHF := openrlhf==0.11.2
# verl, the second engine, the same way (tests use its reward manager, dump code and config); hydra 1.3 beside it
# (antlr 4.9), only for composing verl's config in a subprocess: math-verify keeps antlr 4.13.2 (requirements-cpu.txt)
VERL := verl==0.9.1 transferqueue==0.1.11
VERL_HYDRA := hydra-core==1.3.8 omegaconf==2.3.1 antlr4-python3-runtime==4.9.3

.PHONY: setup demo demo-tiny demo-study selection-demo test lint data bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: requirements-cpu.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-cpu.txt
	$(PY) -m pip install -q --no-deps $(OPENRLHF) $(VERL)
	$(PY) -m pip install -q --no-deps --upgrade --target $(VENV)/verl-hydra13 $(VERL_HYDRA)
	touch $@

demo: setup
	$(PY) mini/run.py --size default --out outputs/mini --overwrite

demo-tiny: setup
	$(PY) mini/run.py --size tiny --out outputs/mini-tiny --overwrite

demo-study: setup
	$(PY) mini/run.py --size default --seeds 0,1,2,3,4 --rand_draws 3 --out outputs/mini-study --overwrite

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
