# The two commands of the README. Both work on a fresh machine with Python >= 3.10 and make.
#   make demo   sets up .venv and runs the demo on the shipped sample data (outputs in demo_output/)
#   make test   sets up .venv and runs the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test venv clean bench-io

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt torch==2.13.0
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test,server,ray]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/multimodalgen --progress none demo --out-dir demo_output

test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" Testing; rc=$$?; if [ $$rc -eq 5 ]; then exit 0; else exit $$rc; fi

bench-io: $(STAMP)
	$(BIN)/python benchmarks/io/bench_resample.py

clean:
	rm -rf $(VENV) demo_output .pytest_cache
