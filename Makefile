# Set-up and the two everyday commands. Everything the project needs is installed here.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test lint docs mutation clean

install: $(STAMP)

# The exact versions come from constraints.txt (pyproject.toml states ranges).
$(STAMP): pyproject.toml Makefile constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c constraints.txt torch torchvision
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev,export,slurm,tensorboard,timm]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m lionfer.experiments.demo

test: $(STAMP)
	$(PY) -m pytest

# Mutation testing of lionfer/algorithms/ against their tests; lists the mutants that survive.
# MUTANTS narrows it, e.g. make mutation MUTANTS='lionfer.algorithms.lion*'. One torch thread
# per child: mutmut forks its workers, and forked OpenMP pools can hang.
MUTANTS ?=
mutation: $(STAMP)
	OMP_NUM_THREADS=1 $(VENV)/bin/mutmut run --max-children 2 $(MUTANTS) || true
	$(VENV)/bin/mutmut results

lint: $(STAMP)
	$(VENV)/bin/ruff check lionfer tests benchmarks docs

# The documentation site (mkdocs.yml, docs/) into site/. --strict: a broken link or anchor, or a
# page left out of the nav, is an error.
docs: $(STAMP)
	$(VENV)/bin/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) build *.egg-info mutants site
