# Two commands for a fresh clone: `make demo` and `make test`.
VENV   := .venv
PYTHON := $(VENV)/bin/python
PIP    := $(PYTHON) -m pip
STAMP  := $(VENV)/.installed

.PHONY: demo test install clean

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

install: $(STAMP)

demo: install
	$(PYTHON) demo/smoke.py

test: install
	$(PYTHON) -m pytest -q tests

clean:
	rm -rf $(VENV) build dist *.egg-info
