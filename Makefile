# Two commands, each self-contained on a fresh machine:  make demo  ·  make test
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
DEMO_OUT ?= demo_out
# torch is pinned first: on these machines 2.13.0 is a local CPU wheel (any other spec downloads CUDA builds).
TORCH_SPEC ?= torch==2.13.0

.PHONY: demo test venv clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet "$(TORCH_SPEC)"
	$(PIP) install --quiet -e ".[test]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/voxeldosimetry demo --out $(DEMO_OUT)

# pytest's own exit status is kept in .pytest-exit-code so .ci/run can tell "no tests collected" (5) apart.
test: $(STAMP)
	@rm -f .pytest-exit-code; $(PY) -m pytest Testing $(PYTEST_ARGS); rc=$$?; echo $$rc > .pytest-exit-code; exit $$rc

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache .pytest-exit-code
