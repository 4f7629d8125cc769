# medfm developer entry points. Each target creates .venv when it is missing and
# installs the package with the pins in constraints.txt.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SHARED_DATA := $(abspath ../shared/data)
# --data-root > $MEDFM_DATA > ~/.cache/medfm; here ../shared/data when it exists.
export MEDFM_DATA ?= $(if $(wildcard $(SHARED_DATA)),$(SHARED_DATA),)
RUN ?= runs/demo
PYTEST_ARGS ?=

.PHONY: demo test test-slow bench venv clean

$(VENV)/.installed: pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@# MedMNIST-C corruptions need ImageMagick's MagickWand library (apt package libmagickwand-dev).
	@if ! ldconfig -p 2>/dev/null | grep -q libMagickWand; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libmagickwand-dev >/dev/null) \
	      || echo "warning: could not install libmagickwand-dev; MedMNIST-C corruptions will be unavailable"; \
	  else echo "warning: libMagickWand not found; install libmagickwand-dev for MedMNIST-C corruptions"; fi; \
	fi
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e ".[all,test]"
	@touch $@

venv: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/medfm pretrain pretrain/simclr_resnet18_pneumoniamnist.yaml --output $(RUN)/pretrain
	$(VENV)/bin/medfm finetune finetune/lora_resnet18_pneumoniamnist.yaml --init $(RUN)/pretrain/checkpoint --output $(RUN)/finetune
	$(VENV)/bin/medfm merge $(RUN)/finetune/adapter $(RUN)/model
	$(VENV)/bin/medfm eval $(RUN)/model --data pneumoniamnist --split test --output $(RUN)/eval
	$(VENV)/bin/medfm card $(RUN)/model --results $(RUN)/eval/results.json
	@cat $(RUN)/eval/report.md

test: $(VENV)/.installed
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-slow: $(VENV)/.installed
	$(PY) -m pytest -q -m slow $(PYTEST_ARGS)

bench: $(VENV)/.installed
	$(PY) benchmarks/train_throughput.py

clean:
	rm -rf $(VENV) runs
