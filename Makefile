# CAE-IMPACT - build of every report of a study, from raw survey exports to HTML/PDF/DOCX.
#
# The dependency graph is made of real files: a CAE's cleaned data depend on its raw export,
# the study, the codebook, the cleaning notebook and the code it runs; a target's report depends
# on the cleaned data of the CAEs it uses. Each step's inputs are declared once, in
# src/cae_impact/run/steps.py, which the cache keys and the manifests read too: build/<study>.mk is
# generated from it and the study (every target's prerequisites, including the source files of
# that step's own code, not all of src/). This file holds the recipes and no list of inputs.
# Outputs are written under a temporary name, then renamed; a failed step leaves nothing that
# looks finished (.DELETE_ON_ERROR). `make -jN` is safe.
#
# Make decides what may be stale (timestamps); the content-addressed cache (build/cache/, see
# src/cae_impact/run/cache.py) decides what really runs: a recipe whose inputs have the same content
# as a previous run restores its outputs without starting a kernel. `make reports` uses every
# core (JOBS, default: nproc + 1: a job waiting on its kernel leaves a core to another) and
# ends with a summary of the failures.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DELETE_ON_ERROR:
.SUFFIXES:
.SECONDEXPANSION:
MAKEFLAGS += --no-builtin-rules

PYTHON_SYS ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
KERNEL := cae-impact
STUDY ?= config/study.yaml
PROCESSED_ROOT ?= data/processed
REPORTS_ROOT ?= reports
BUILD_ROOT ?= build
NOTEBOOKS_DIR ?= notebooks
CACHE_ROOT ?= $(BUILD_ROOT)/cache
JOBS ?= $(shell echo $$(( $$(nproc 2>/dev/null || echo 2) + 1 )))

# Every Jupyter lookup goes to the project's environment first, so that a stray per-user kernel
# named like ours cannot hijack the executions (the build also checks the kernel's interpreter).
export JUPYTER_PATH := $(abspath $(VENV))/share/jupyter
export MPLBACKEND := Agg
export PYTHONHASHSEED := 0
export PYDEVD_DISABLE_FILE_VALIDATION := 1
# Progress lines: time since the top-level make started, notebooks done out of the total.
# Set once (`?=` would make them recursive: `date` ran again at each use, so `make reports`
# removed another counter than the one its build wrote, and the counters piled up).
ifndef CAE_BUILD_START
CAE_BUILD_START := $(shell date +%s.%N)
endif
export CAE_BUILD_START
ifndef CAE_BUILD_PROGRESS
CAE_BUILD_PROGRESS := $(abspath $(BUILD_ROOT))/progress/$(CAE_BUILD_START).count
endif
export CAE_BUILD_PROGRESS

VENV_STAMP := $(VENV)/.installed
# Every source file: only the generated include depends on all of them (a step's code files,
# listed there, are found by following the imports, which any edit can change).
SRC := $(shell find src/cae_impact -name '*.py' 2>/dev/null | sort)
STUDY_MK := $(BUILD_ROOT)/study-$(subst /,_,$(STUDY)).mk
# Build steps go through the kernel server when `make reports` runs one (a forked, warm
# process: no start-up cost); otherwise the client runs the step itself.
CLI := $(PY) -m cae_impact.run client -- --study $(STUDY) --processed-root $(PROCESSED_ROOT) --reports-root $(REPORTS_ROOT) --notebooks-dir $(NOTEBOOKS_DIR) --cache-root $(CACHE_ROOT)

.DEFAULT_GOAL := help

## help: list the documented targets
.PHONY: help
help:
	@echo "CAE-IMPACT - make targets"
	@grep -E '^## ' $(MAKEFILE_LIST) | sed -e 's/^## /  /' -e 's/: /\t/' | expand -t 22
	@echo
	@echo "Variables: STUDY=$(STUDY)  PROCESSED_ROOT=$(PROCESSED_ROOT)  REPORTS_ROOT=$(REPORTS_ROOT)"

# ---------------------------------------------------------------- environment
## env: create .venv from the pinned lock file and register the project kernel
.PHONY: env
env: $(VENV_STAMP)

$(VENV_STAMP): requirements.lock pyproject.toml
	@echo "==> building the environment in $(VENV) (pip, from requirements.lock)"
	bash scripts/ensure_system_deps.sh
	test -x $(PY) || $(PYTHON_SYS) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -r requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(PY) -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python (CAE-IMPACT)" >/dev/null
	$(PY) -m cae_impact.run.cli check-env
	touch $@

## lock: refresh requirements.lock (and environment.yml) from pyproject.toml, in a scratch venv
# The lock is complete (pip freeze --all) and installed with --no-deps, so it is exactly what
# runs. rfc3987-syntax is left out on purpose: jsonschema imports it when present (an optional
# format checker asked for by jupyter-events' extra) and its import builds a grammar that costs
# 2.1 s in every process that imports nbformat; nothing of ours checks IRI formats.
.PHONY: lock
lock:
	rm -rf $(BUILD_ROOT)/lockvenv
	$(PYTHON_SYS) -m venv $(BUILD_ROOT)/lockvenv
	$(BUILD_ROOT)/lockvenv/bin/pip install --quiet --upgrade pip
	$(BUILD_ROOT)/lockvenv/bin/pip install --quiet "setuptools>=68" wheel ".[dev]"
	{ echo "# Pinned lock file: every package of the project environment (Python 3.11, Linux x86_64)."; \
	  echo "# Regenerate with 'make lock' from pyproject.toml; do not edit by hand."; \
	  $(BUILD_ROOT)/lockvenv/bin/pip freeze --all --exclude-editable | grep -v -e "^cae-impact" -e "^pip==" -e "^rfc3987-syntax==" | sort -f; } > requirements.lock.tmp
	mv requirements.lock.tmp requirements.lock
	$(PYTHON_SYS) scripts/write_environment_yml.py requirements.lock > environment.yml.tmp
	mv environment.yml.tmp environment.yml
	rm -rf $(BUILD_ROOT)/lockvenv

# ---------------------------------------------------------------- study graph
# build/study-*.mk defines WAVE, CAES, TARGETS and CHANGES from the study configuration, and the
# prerequisites of every target of the rules below (cae_impact.run.steps). It is only needed (and
# the environment only built) for the build targets.
NEEDS_STUDY := $(filter reports-study reports-all data-processed verify publish-reference publish-wave,$(MAKECMDGOALS))$(CAE_NEEDS_STUDY)
ifneq ($(NEEDS_STUDY),)
include $(STUDY_MK)
endif

$(STUDY_MK): $(STUDY) $(VENV_STAMP) $(SRC) $(wildcard $(NOTEBOOKS_DIR)/*.ipynb)
	@mkdir -p $(@D)
	$(PY) -m cae_impact.run.cli --study $(STUDY) --processed-root $(PROCESSED_ROOT) --reports-root $(REPORTS_ROOT) \
	  --notebooks-dir $(NOTEBOOKS_DIR) make-include > $@.tmp
	mv $@.tmp $@

PROCESSED := $(foreach c,$(CAES),$(PROCESSED_ROOT)/$(WAVE)/$(c)/responses.parquet)
# The consortium first: its analysis is the longest, so it starts as soon as it can.
REPORT_DIRS := $(foreach t,$(filter consortium,$(TARGETS)) $(filter-out consortium,$(TARGETS)),$(REPORTS_ROOT)/$(WAVE)/$(t))
HTML := $(addsuffix /report.html,$(REPORT_DIRS))
PDF := $(addsuffix /report.pdf,$(REPORT_DIRS))
DOCX := $(addsuffix /report.docx,$(REPORT_DIRS))
# The per-target execution stamps are real outputs, not intermediates to delete after the build.
.SECONDARY: $(addsuffix /notebooks/.executed,$(REPORT_DIRS))

## reports: build every report of every wave of STUDIES (each CAE and the consortium): HTML, PDF, DOCX, indicators
# The waves are built one after the other, oldest first (STUDIES; `make reports STUDY=…` builds
# one study only). A later wave reads the earlier waves' published figures (data/reference/),
# never their reports: building it changes no file of reports/<earlier wave>/.
STUDIES ?= config/study.yaml config/study-2027.yaml
ifeq ($(origin STUDY),command line)
STUDIES := $(STUDY)
endif
.PHONY: reports reports-study reports-all
reports: $(VENV_STAMP)
	@for s in $(STUDIES); do $(MAKE) --no-print-directory reports-study STUDY=$$s || exit $$?; done

# One study: runs the graph in a sub-make on every core (unless -j was given), with a kernel
# server that forks warm kernels (src/cae_impact/run/kernels.py), then says how many notebooks and
# targets failed (reports/<wave>/_failures/), and exits non-zero if any did.
reports-study:
	@rm -f $(CAE_BUILD_PROGRESS)
	@if $(MAKE) -q --no-print-directory CAE_NEEDS_STUDY=1 $(HTML) $(PDF) $(DOCX) $(REPORTS_ROOT)/index.html 2>/dev/null; then \
	  echo "==> reports up to date: $(REPORTS_ROOT)/index.html"; exit 0; fi; \
	  status=0; $(PY) -m cae_impact.run run -- $(MAKE) --no-print-directory $(if $(filter -j%,$(MAKEFLAGS)),,-j$(JOBS)) reports-all || status=$$?; \
	  rm -f $(CAE_BUILD_PROGRESS); \
	  if [ $$status -ne 0 ]; then $(CLI) build-summary --status $$status || true; exit $$status; fi

reports-all: $(HTML) $(PDF) $(DOCX) $(REPORTS_ROOT)/index.html
	@echo "==> reports ready: $(REPORTS_ROOT)/index.html (elapsed $$(awk -v s=$(CAE_BUILD_START) -v e=$$(date +%s.%N) 'BEGIN{printf "%.1f", e-s}') s)"

## data-processed: run the cleaning notebook for every CAE (data/processed/<wave>/<cae>/)
.PHONY: data-processed
data-processed: $(PROCESSED)

# Every rule below gets its prerequisites from $(STUDY_MK) (cae_impact.run.steps); the environment
# is the one prerequisite written here.

# Cleaning: notebook 01 for one CAE (its raw export and mapping, the study, the codebook).
$(PROCESSED_ROOT)/$(WAVE)/%/responses.parquet: $(VENV_STAMP)
	$(CLI) clean --cae $*

# Estimation: every indicator of every target from all CAEs' cleaned data, with the survey
# design and disclosure control applied study-wide (a hidden cell must stay hidden in every
# report), and each report's own rows (_study/report__<target>.parquet). A CAE's rows hold its
# figures and the consortium figures it is compared with: the published reference (see
# publish-reference) or, with 'consortium_reference: live', this build's consortium.
# The step executes notebook 02 (reports/<wave>/_study/notebooks/02_estimation.ipynb): the
# estimation, then the weighting and secrecy diagnostics a reviewer checks.
ESTIMATES := $(REPORTS_ROOT)/$(WAVE)/_study/estimates.parquet
$(ESTIMATES): $(VENV_STAMP)
	$(CLI) estimate

## publish-reference: publish the consortium figures of the cleaned data as the reference the CAE reports compare with
# Writes the file named by consortium_reference in the study file (and its .json description).
# The CAE reports keep comparing with the published figures, whatever another CAE's data
# become, until this is run again; then every CAE report is rebuilt.
.PHONY: publish-reference
publish-reference: $(VENV_STAMP)
	$(CLI) publish-reference

## publish-wave: publish the figures of every CAE and the consortium that a later wave compares with (data/reference/<study>/<wave>/wave.csv)
# With its description wave.json (date, commit, digests, codebook version and indicator
# signatures). A later wave names the file in its study file (previous_waves).
.PHONY: publish-wave
publish-wave: $(VENV_STAMP)
	$(CLI) publish-wave

# Changes since the previous wave (CHANGES is empty without previous_waves): from this wave's
# study table and the earlier waves' published figures (src/cae_impact/analysis/waves.py), into _waves/.
ifneq ($(CHANGES),)
$(CHANGES): $(VENV_STAMP)
	$(CLI) changes
endif

# Analysis: notebooks 03 (every effect domain, a chapter each) and 04 for one target (and 05, the evolution
# since the previous wave, when there is one), executed into reports/<wave>/<target>/notebooks/,
# then indicators.csv and indicators.xlsx.
$(REPORTS_ROOT)/$(WAVE)/%/notebooks/.executed: $(VENV_STAMP)
	$(CLI) analyse --target $*
	touch $@

# A target's documents: HTML from the executed notebooks, then PDF and DOCX from the HTML, made
# by one step (a pattern rule's targets are made together). Each document is cached by content
# on its own; one step instead of three spares two processes per target when they are all hits.
$(REPORTS_ROOT)/$(WAVE)/%/report.html $(REPORTS_ROOT)/$(WAVE)/%/report.pdf $(REPORTS_ROOT)/$(WAVE)/%/report.docx: $(VENV_STAMP)
	$(CLI) render --target $* --to html pdf docx

$(REPORTS_ROOT)/index.html: $(VENV_STAMP)
	$(CLI) index

## verify: re-execute without the cache, fresh kernels, and check indicators.csv and the manifest (TARGET=<id> for one)
.PHONY: verify
verify: $(STUDY_MK)
	$(CLI) audit-secrecy
	$(CLI) verify $(if $(TARGET),--target $(TARGET))

## audit-secrecy: attack every published figure of the wave (linear programs); fails if a hidden count is exposed
.PHONY: audit-secrecy
audit-secrecy: $(VENV_STAMP)
	$(CLI) audit-secrecy

## build-summary: how many notebooks and targets failed in the last build
.PHONY: build-summary
build-summary: $(VENV_STAMP)
	$(CLI) build-summary

## bench: time cold, no-op, markdown-only and one-export builds against naive papermill (BENCH_ARGS=...)
.PHONY: bench
bench: $(VENV_STAMP)
	$(PY) scripts/bench_build.py $(BENCH_ARGS)

## scan-personal-data: search data/processed/ and reports/ for the raw exports' e-mails, phones, IPs and ids
.PHONY: scan-personal-data
scan-personal-data: $(VENV_STAMP)
	$(CLI) scan-personal-data

## verify-r: recompute every published share with R's survey package (needs R: r-base-core r-cran-survey r-cran-yaml)
.PHONY: verify-r
verify-r: $(VENV_STAMP)
	@command -v Rscript >/dev/null || { echo "R is not installed: apt-get install r-base-core r-cran-survey r-cran-yaml" >&2; exit 1; }
	rm -rf $(BUILD_ROOT)/verify-r
	$(PY) scripts/responses_to_csv.py $(PROCESSED_ROOT) $$($(PY) -m cae_impact.run.cli --study $(STUDY) make-include | sed -n 's/^WAVE := //p') $(BUILD_ROOT)/verify-r
	Rscript scripts/verify_with_r.R $$($(PY) -m cae_impact.run.cli --study $(STUDY) make-include | sed -n 's/^WAVE := //p') $(REPORTS_ROOT) $(BUILD_ROOT)/verify-r

## verify-r-changes: recompute the changes between two waves with R's survey package (needs R, as verify-r)
# PREV_WAVE/CUR_WAVE and their codebooks default to the demo's 2026 and 2027 waves.
PREV_WAVE ?= 2026
CUR_WAVE ?= 2027
PREV_CODEBOOK ?= config/codebook.yaml
CUR_CODEBOOK ?= config/codebook-2027.yaml
.PHONY: verify-r-changes
verify-r-changes: $(VENV_STAMP)
	@command -v Rscript >/dev/null || { echo "R is not installed: apt-get install r-base-core r-cran-survey r-cran-yaml" >&2; exit 1; }
	rm -rf $(BUILD_ROOT)/verify-r-changes
	$(PY) scripts/responses_to_csv.py $(PROCESSED_ROOT) $(PREV_WAVE) $(BUILD_ROOT)/verify-r-changes/$(PREV_WAVE)
	$(PY) scripts/responses_to_csv.py $(PROCESSED_ROOT) $(CUR_WAVE) $(BUILD_ROOT)/verify-r-changes/$(CUR_WAVE)
	Rscript scripts/verify_changes_with_r.R $(PREV_WAVE) $(CUR_WAVE) $(PREV_CODEBOOK) $(CUR_CODEBOOK) $(REPORTS_ROOT) $(BUILD_ROOT)/verify-r-changes

# ---------------------------------------------------------------- data and questionnaire
## data: regenerate the synthetic demo study's raw exports (deterministic, committed)
.PHONY: data
data: $(VENV_STAMP)
	$(PY) -m cae_impact_demo.demo --study config/study.yaml --root .

## data-wave2: regenerate the demo's second wave (2027) exports and its truth of change (deterministic, committed)
.PHONY: data-wave2
data-wave2: $(VENV_STAMP)
	$(PY) -m cae_impact_demo.waves

## questionnaire: generate the XLSForm (Kobo/ODK), the LimeSurvey structure and the printable questionnaire (HTML, PDF)
.PHONY: questionnaire
questionnaire: $(VENV_STAMP)
	$(PY) -m cae_impact.spec.questionnaire $(REPORTS_ROOT)/questionnaire

# ---------------------------------------------------------------- quality
## test: run every test tier (unit, oracle, integration, conventions; tests/conftest.py)
.PHONY: test test-unit test-oracle test-integration test-conventions
test: $(VENV_STAMP)
	$(PY) -m pytest -q

## test-unit: tier 1, functions and modules in memory (about a minute)
test-unit: $(VENV_STAMP)
	$(PY) -m pytest -q -m unit

## test-oracle: tier 2, the estimation against R's survey package outputs, and the simulations
test-oracle: $(VENV_STAMP)
	$(PY) -m pytest -q -m oracle

## test-integration: tier 3, the build on a fixture study (Make, papermill, kernels, documents)
test-integration: $(VENV_STAMP)
	$(PY) -m pytest -q -m integration

## test-conventions: tier 4, the project's rules (stripped notebooks, layers, layout)
test-conventions: $(VENV_STAMP)
	$(PY) -m pytest -q -m conventions

## test-fast: every tier but the notebook builds and the slow simulations
.PHONY: test-fast
test-fast: $(VENV_STAMP)
	$(PY) -m pytest -q -m "not notebook and not slow"

## lint: ruff on src/, tests/ and scripts/, and a check that notebooks are stripped
.PHONY: lint
lint: $(VENV_STAMP)
	$(PY) -m ruff check src tests scripts
	$(PY) -m pytest -q tests/test_conventions.py

## lab: open JupyterLab with the project kernel (notebooks run on the demo study as they are)
.PHONY: lab
lab: $(VENV_STAMP)
	$(VENV)/bin/jupyter lab --notebook-dir=. notebooks/

## clean: remove generated reports, processed data and build files (never data/raw/)
.PHONY: clean
clean:
	rm -rf $(REPORTS_ROOT)/* $(BUILD_ROOT)
	find $(PROCESSED_ROOT) -mindepth 1 ! -name README.md ! -name .gitkeep -exec rm -rf {} + 2>/dev/null || true
	@touch $(REPORTS_ROOT)/.gitkeep

## distclean: clean, and remove the environment
.PHONY: distclean
distclean: clean
	rm -rf $(VENV)
