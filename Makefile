# The two quick-start commands (`make run`: the bank anti-fraud demo, `make test`) create .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: run simulate test bench bench-micro bench-baseline clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/secagg demo

simulate: $(STAMP)
	$(VENV)/bin/secagg simulate

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) benchmarks/run.py --preset quick

MICRO := $(PY) -m pytest benchmarks/test_micro.py -q --benchmark-enable \
	--benchmark-storage=file://benchmarks/baselines --benchmark-columns=mean,stddev,rounds

bench-micro: $(STAMP)
	$(MICRO) --benchmark-compare=0001 --benchmark-compare-fail=mean:25%

bench-baseline: $(STAMP)
	$(MICRO) --benchmark-save=baseline

clean:
	rm -rf $(VENV) build *.egg-info
