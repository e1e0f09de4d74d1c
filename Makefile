# Two commands set everything up: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DOCS_STAMP := $(VENV)/.docs-installed-stamp
# Parallel test workers: all cores, at most 4.
WORKERS ?= $(shell $(PYTHON) -c "import os; print(min(4, os.cpu_count() or 1))")

.PHONY: demo demo-normal demo-mixture test bench bench-training bench-kl bench-all lint docs install clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# The two demo runs train side by side, one core each.
demo: $(STAMP)
	$(MAKE) --no-print-directory -j2 demo-normal demo-mixture

demo-normal: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m pyro_glow train moons --steps 3000 --out runs/moons

demo-mixture: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m pyro_glow train moons --steps 3000 --prior mixture --out runs/moons-mixture

# Benchmarks install their peers (normflows) into .venv only: never a runtime dependency.
# Speed and memory against normflows and Pyro, ratios from alternating timings (docs/benchmarks.md).
bench: $(STAMP)
	$(PY) -m pip install --quiet normflows
	mkdir -p runs/bench
	$(PY) benchmarks/svi_overhead.py --json runs/bench/svi_overhead.json
	$(PY) benchmarks/glow_step.py --compile --json runs/bench/glow_step.json
	$(PY) benchmarks/step_alone.py --json runs/bench/step_alone.json
	$(PY) benchmarks/ops.py --quick --json runs/bench/ops.json
	$(PY) benchmarks/sampling.py --json runs/bench/sampling.json
	$(PY) benchmarks/memory.py --json runs/bench/memory.json
	$(PY) benchmarks/precision.py --json runs/bench/precision.json

# What training reaches beside the peers: moons against the true density, CIFAR-10 on the CPU
# (reads ../shared/data), stability at high learning rates. Longer than `bench`.
bench-training: $(STAMP)
	$(PY) -m pip install --quiet normflows
	mkdir -p runs/bench
	$(PY) benchmarks/moons_nll.py --json runs/bench/moons_nll.json
	$(PY) benchmarks/cifar_cpu.py --json runs/bench/cifar_cpu.json
	$(PY) benchmarks/stability.py --json runs/bench/stability.json

bench-all: bench bench-training bench-kl

# Exact KL(q || p) of pyro-glow's and Pyro's guides on five 2-D targets (docs/guides.md).
bench-kl: $(STAMP)
	mkdir -p runs/bench
	$(PY) benchmarks/kl_targets.py --json runs/bench/kl_targets.json --figure docs/figures/guides_kl_targets.png

test: $(STAMP)
	$(PY) -m pytest -q -n $(WORKERS) pyro_glow tests

# The documentation site (Sphinx + MyST): warnings are errors, then the docstrings' examples.
$(DOCS_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[docs]'
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	MPLBACKEND=Agg $(PY) -m sphinx -W --keep-going -q -b html docs docs/_build/html
	MPLBACKEND=Agg $(PY) -m sphinx -W -q -b doctest docs docs/_build/doctest

lint: $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m ruff check pyro_glow examples tests benchmarks
	$(PY) -m ruff format --check pyro_glow examples tests benchmarks

clean:
	rm -rf runs build dist *.egg-info
