# amikeeper — the two commands a newcomer needs are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
SAM_VENV := .venv-sam
CHECKOV_VENV := .venv-checkov
# The SAM-translated template that checkov scans (.aws-sam/ is ignored by git).
SCANNED_TEMPLATE := .aws-sam/checkov/template.json
PY := $(VENV)/bin/python
# sam build needs python3.13 (the Lambda runtime); pyenv provides it on these machines.
export PYENV_VERSION ?= 3.11.7:3.12.1:3.13.0

.PHONY: demo test lint types scan unit integration bench install clean

$(VENV)/.installed: requirements-dev.txt layers/shared/requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip==25.3
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

$(SAM_VENV)/.installed: requirements-sam.txt
	test -x $(SAM_VENV)/bin/python || $(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install --quiet --upgrade pip==25.3
	$(SAM_VENV)/bin/python -m pip install --quiet -r requirements-sam.txt
	touch $@

# checkov pins a boto3 older than ours: it gets a virtualenv of its own.
$(CHECKOV_VENV)/.installed: requirements-checkov.txt
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --upgrade pip==25.3
	$(CHECKOV_VENV)/bin/python -m pip install --quiet -r requirements-checkov.txt
	touch $@

install: $(VENV)/.installed $(SAM_VENV)/.installed $(CHECKOV_VENV)/.installed

## The main job on the embedded default: a moto fleet, the deployed handlers, no AWS account.
demo: $(VENV)/.installed
	PYTHONPATH=layers/shared:cli:. $(PY) -m scripts.demo

## Lint, strict types, template checks (sam validate, cfn-lint, sam build) and every test.
test: install lint types scan
	$(PY) -m pytest -q -p no:cacheprovider

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

types: $(VENV)/.installed
	$(VENV)/bin/mypy layers/shared/amikeeper functions tests scripts cli

## checkov on the SAM-translated template; fails on any finding not skipped, with a reason, in .checkov.yaml.
## The vault account's template (plain CloudFormation): cfn-lint, then checkov (skips, if any, inline there).
scan: $(VENV)/.installed $(SAM_VENV)/.installed $(CHECKOV_VENV)/.installed
	PYTHONPATH=layers/shared:. $(PY) -m tests.integration.test_template_checkov $(SCANNED_TEMPLATE)
	BC_SKIP_MAPPING=TRUE $(CHECKOV_VENV)/bin/checkov --config-file .checkov.yaml --skip-download -f $(SCANNED_TEMPLATE)
	$(SAM_VENV)/bin/cfn-lint vault/template.yaml
	BC_SKIP_MAPPING=TRUE $(CHECKOV_VENV)/bin/checkov --config-file .checkov.yaml --skip-download -f vault/template.yaml

unit: $(VENV)/.installed
	$(PY) -m pytest -q tests/unit

integration: install
	$(PY) -m pytest -q tests/integration

## API calls per instance, wall time and peak memory for growing fleets (not part of `make test`).
bench: $(VENV)/.installed
	PYTHONPATH=layers/shared:. $(PY) -m scripts.bench

clean:
	rm -rf $(VENV) $(SAM_VENV) $(CHECKOV_VENV) .aws-sam .mypy_cache .ruff_cache .pytest_cache .hypothesis
