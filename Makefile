# sgverbalise: `make demo` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# CPU wheel by default; a GPU user sets TORCH_SPEC (e.g. TORCH_SPEC=torch TORCH_INDEX="--index-url https://download.pytorch.org/whl/cu124").
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
EXTRAS ?= dev,train,s3
STAMP := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))
comma := ,
PYTEST_ARGS ?=
DEMO_OUT ?= out/demo

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: help install test quick demo bench lint clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)" $(TORCH_INDEX)
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

install: $(STAMP)  ## create .venv and install the project (torch first, CPU wheel by default)

test: $(STAMP)  ## run the whole test suite
	$(BIN)/python -m pytest $(PYTEST_ARGS)

quick: $(STAMP)  ## the fast inner loop: skip tests marked slow
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

demo: $(STAMP)  ## generate a small corpus and run the main job on it (output in out/demo)
	$(BIN)/sgv demo --out $(DEMO_OUT)

bench: $(STAMP)  ## run the benchmarks in bench/ (slow; figures go to bench/out)
	$(BIN)/python -m bench.read_json && $(BIN)/python -m bench.build_shards && $(BIN)/python -m bench.images && $(BIN)/python -m bench.loader && $(BIN)/python -m bench.runner_race && $(BIN)/python -m bench.stages

lint: $(STAMP)  ## ruff
	$(BIN)/ruff check schemas sgverbalise pipelines training cli configs tests bench

clean:  ## remove .venv and outputs
	rm -rf $(VENV) out bench/out
