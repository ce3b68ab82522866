# The two quick-start commands (`make run`: the bank anti-fraud demo, `make test`) create .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DEMO_STAMP := $(VENV)/.demo-stamp
DOCS_STAMP := $(VENV)/.docs-stamp
# where `make bench` and `make bench-micro` write; ignored by git (benchmarks/results/ is the committed copy)
LOCAL := benchmarks/local
SITE := build/site
# Material for MkDocs prints a multi-line notice about MkDocs 2.0 on every build unless told not to
export NO_MKDOCS_2_WARNING := 1

.PHONY: run simulate test typecheck docs docs-build bench bench-update bench-micro bench-baseline clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# everything `make test` needs: every extra (the `test` extra in pyproject.toml), then torch's CPU build,
# best effort: pinned by its local version so pip never picks a CUDA build of several GB, found in a local
# wheelhouse or on PyTorch's CPU index; where neither is reachable the torch tests skip and say so.
TORCH := torch==2.13.0+cpu
TORCH_INDEX := https://download.pytorch.org/whl/cpu
$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -e '.[test]'
	$(PY) -m pip install --quiet '$(TORCH)' 2>/dev/null \
		|| $(PY) -m pip install --quiet --retries 1 --timeout 30 '$(TORCH)' --index-url $(TORCH_INDEX) 2>/dev/null \
		|| echo "torch's CPU build is not installable here: the torch adapter tests will skip"
	touch $(STAMP)

# the demo needs the core and rich (the `demo` extra), nothing else
$(DEMO_STAMP): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -e '.[demo]'
	touch $(DEMO_STAMP)

$(DOCS_STAMP): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -e '.[docs]'
	touch $(DOCS_STAMP)

run: $(DEMO_STAMP)
	$(VENV)/bin/secagg demo

simulate: $(DEMO_STAMP)
	$(VENV)/bin/secagg simulate

# CI's command (.ci/run): the type check, the documentation site, then the test suite (README/docs code
# blocks included: tests/test_docs_examples.py)
test: $(STAMP)
	$(PY) -m mypy
	$(PY) -m mkdocs build --strict --quiet --site-dir $(SITE)
	$(PY) -m pytest -q

typecheck: $(STAMP)
	$(PY) -m mypy

# the documentation site, strict: a broken link or anchor, or a docstring the reference cannot render, fails
docs-build: $(DOCS_STAMP)
	$(PY) -m mkdocs build --strict --quiet --site-dir $(SITE)

# serve the site with live reload on http://127.0.0.1:8000
docs: $(DOCS_STAMP)
	$(PY) -m mkdocs serve

bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) benchmarks/run.py --preset quick --out $(LOCAL)/quick

# the same, replacing the committed results in benchmarks/results/quick
bench-update: $(STAMP)
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) benchmarks/run.py --preset quick --update-results

MICRO := $(PY) -m pytest benchmarks/test_micro.py -q --benchmark-enable \
	--benchmark-columns=min,median,rounds --benchmark-json=$(LOCAL)/micro.json

# each kernel's time as a multiple of the AES-CTR reference measured in the same run, against the saved ratios
bench-micro: $(STAMP)
	mkdir -p $(LOCAL)
	$(MICRO)
	$(PY) benchmarks/compare_micro.py $(LOCAL)/micro.json

bench-baseline: $(STAMP)
	mkdir -p $(LOCAL)
	$(MICRO)
	$(PY) benchmarks/compare_micro.py $(LOCAL)/micro.json --save

clean:
	rm -rf $(VENV) build *.egg-info $(LOCAL)
