# Set-up and everyday tasks. `make demo` and `make test` work on a fresh clone:
# each creates the virtual environment in .venv if it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SCRATCH := scratch

.PHONY: demo test bench sample-data clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test,plot,dask]'
	touch $(VENV)/.installed $@

demo: $(VENV)/.installed
	mkdir -p $(SCRATCH)
	$(BIN)/softkm fit sample_data/blobs_separated.csv -k 4 --exclude label --force \
		--output $(SCRATCH)/labels.csv --centroids $(SCRATCH)/centroids.csv --model $(SCRATCH)/model.json
	$(BIN)/softkm fit sample_data/customers.csv -k 4 --mode soft --standardize --exclude segment \
		--keep customer_id --probabilities --force --output $(SCRATCH)/customers_labels.csv \
		--model $(SCRATCH)/customers_model.json
	$(BIN)/softkm assign $(SCRATCH)/model.json sample_data/blobs_separated.parquet --force \
		--output $(SCRATCH)/assigned.csv
	$(BIN)/softkm compare sample_data/blobs_overlapping.parquet -k 6 --truth label --format markdown
	@echo "Outputs are in $(SCRATCH)/"

# pytest exits with 5 when it collects no test; that must fail the run, and it does,
# because make treats every non-zero exit code as a failure.
test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q

$(VENV)/.installed-bench: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	touch $(VENV)/.installed $@

# Speed and memory against scikit-learn and faiss (a few minutes); rewrites the speed
# section of docs/benchmarks.md with the figures of this run.
bench: $(VENV)/.installed-bench
	$(BIN)/python benchmarks/speed.py --write docs/benchmarks.md

sample-data: $(VENV)/.installed
	$(BIN)/python scripts/make_sample_data.py

clean:
	rm -rf $(SCRATCH) .pytest_cache
