# The README's two set-up commands: `make study` (main job) and `make test` (whole test suite).
# Each creates or reuses the virtual environment in .venv first.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
STUDY_DIR ?= study

.PHONY: install study study-quick test test-fast explore bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test,umap]'
	touch $(STAMP)

install: $(STAMP)

study: $(STAMP)
	$(BIN)/latent-atlas study -o $(STUDY_DIR)

study-quick: $(STAMP)
	$(BIN)/latent-atlas study --quick -o $(STUDY_DIR)-quick

# The whole suite, slow end-to-end tests included (about two minutes on 2 cores).
test: $(STAMP)
	$(BIN)/python -m pytest -m ''

# The default selection of plain `pytest`: everything but the tests marked slow.
test-fast: $(STAMP)
	$(BIN)/python -m pytest

explore: $(STAMP)
	$(BIN)/latent-atlas explore $(STUDY_DIR)/runs/gaussian-vae $(STUDY_DIR)/runs/gaussian-ae

bench: $(STAMP)
	$(BIN)/python benchmarks/training_throughput.py

clean:
	rm -rf $(VENV) $(STUDY_DIR) $(STUDY_DIR)-quick .pytest_cache
