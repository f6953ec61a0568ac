# The README's two set-up commands: `make study` (main job) and `make test` (whole test suite).
# Each creates or reuses the virtual environment in .venv first.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
STUDY_DIR ?= study

.PHONY: install study study-quick study-dimensions study-toolbox study-full sweep-example test test-fast explore \
        bench bench-oracle bench-metrics bench-time-to-quality bench-training-settings clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test,umap,tracking]'
	touch $(STAMP)

install: $(STAMP)

# The core study: both datasets, VAE and AE, three training seeds each, every analysis, the report.
study: $(STAMP)
	$(BIN)/latent-atlas study -o $(STUDY_DIR)

study-quick: $(STAMP)
	$(BIN)/latent-atlas study --quick -o $(STUDY_DIR)-quick

# The optional sections, added to the same folder (the core runs are reused).
study-dimensions: $(STAMP)
	$(BIN)/latent-atlas study --with dimensions -o $(STUDY_DIR)

study-toolbox: $(STAMP)
	$(BIN)/latent-atlas study --with toolbox -o $(STUDY_DIR)

study-full: $(STAMP)
	$(BIN)/latent-atlas study --with dimensions,toolbox -o $(STUDY_DIR)

sweep-example: $(STAMP)
	$(BIN)/latent-atlas sweep examples/sweep.toml -o sweep

# The whole suite, slow end-to-end tests included.
test: $(STAMP)
	$(BIN)/python -m pytest -m ''

# The default selection of plain `pytest`: everything but the tests marked slow.
test-fast: $(STAMP)
	$(BIN)/python -m pytest

explore: $(STAMP)
	$(BIN)/latent-atlas explore $(STUDY_DIR)

bench: $(STAMP)
	$(BIN)/python benchmarks/training_throughput.py

bench-oracle: $(STAMP)
	$(BIN)/python benchmarks/corruption_roc.py -o benchmark-results/corruption

bench-metrics: $(STAMP)
	$(BIN)/python benchmarks/metrics_speed.py

# pythae goes in its own virtual environment, so the project's stays as pinned.
.venv-bench/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv .venv-bench
	.venv-bench/bin/pip install --quiet --disable-pip-version-check -c constraints.txt -e . pythae==0.1.2
	touch $@

bench-time-to-quality: .venv-bench/.installed
	.venv-bench/bin/python benchmarks/time_to_quality.py --threads 1 --cap-clock cpu --previous

bench-training-settings: $(STAMP)
	$(BIN)/python benchmarks/training_settings.py

clean:
	rm -rf $(VENV) .venv-bench $(STUDY_DIR) $(STUDY_DIR)-quick sweep .pytest_cache
