# Two commands for a fresh clone: `make demo` and `make test`.
VENV   := .venv
PYTHON := $(VENV)/bin/python
PIP    := $(PYTHON) -m pip
STAMP  := $(VENV)/.installed

.PHONY: demo test install lint format clean frontend frontend-lint frontend-test browser-test

$(PYTHON):
	python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# Editable install with the test extras, at the versions pinned in constraints.txt.
$(STAMP): $(PYTHON) setup.py constraints.txt
	$(PIP) install --quiet -c constraints.txt -e '.[test]'
	# tensorflow-probability imports tf-keras, whose dependency on the full `tensorflow` package would
	# install a second TensorFlow over tensorflow-cpu: take it without dependencies.
	$(PIP) install --quiet --no-deps -c constraints.txt tf-keras
	touch $(STAMP)

install: $(STAMP) frontend

# Trains the demo runs (synthetic data, no downloads) and serves them; PORT=6007 make demo for another port.
PORT      ?= 6006
DEMO_LOGS := demo/logs

demo: install
	$(PYTHON) demo/train.py --logdir $(DEMO_LOGS)
	$(PYTHON) -m tb_matmul_explainer report $(DEMO_LOGS)
	@echo "Starting TensorBoard: open http://localhost:$(PORT)/#matmul_explainer (Ctrl-C stops it)"
	$(VENV)/bin/tensorboard --logdir $(DEMO_LOGS) --port $(PORT)

test: install lint
	$(PYTHON) -m pytest -q tests
	$(MAKE) --no-print-directory frontend-lint frontend-test browser-test

# Ruff (ruff.toml): lint and formatting of the Python side; `make format` rewrites in place.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) build dist *.egg-info

# ---- frontend: the TensorBoard tab (TypeScript in frontend/, see frontend/README.md) ----------------------------
# `npm ci` from the committed lock file, then Vite bundles everything into ONE ES module,
# tb_matmul_explainer/static/index.js (not committed). `install` builds it, so an editable install serves it and
# a wheel built after `make install` ships it as package data.
FRONTEND_DEPS := frontend/node_modules/.package-lock.json
BUNDLE        := tb_matmul_explainer/static/index.js

$(FRONTEND_DEPS): frontend/package.json frontend/package-lock.json
	cd frontend && npm ci --no-audit --no-fund
	touch $@

$(BUNDLE): $(FRONTEND_DEPS) $(wildcard frontend/src/*.ts frontend/src/*/*.ts) frontend/vite.config.ts frontend/tsconfig.json
	cd frontend && npm run --silent build

frontend: $(BUNDLE)

# Lint (ESLint with typescript-eslint's type-aware rules, frontend/eslint.config.js): no warning passes.
frontend-lint: $(FRONTEND_DEPS)
	cd frontend && npm run --silent lint

# Unit tests (Vitest): data transforms, scales, layout, CSV export, run alignment, difference view, DOM.
frontend-test: $(FRONTEND_DEPS)
	cd frontend && npm test

# Browser tests: headless Chromium (/usr/bin/chromium, driven by playwright-core) against real TensorBoard
# servers over logs written by our summary ops; screenshots and figures go to frontend/e2e/out/ (docs/ with
# UPDATE_DOCS=1).
browser-test: install
	cd frontend && MMX_PYTHON=$(abspath $(PYTHON)) npm run e2e
