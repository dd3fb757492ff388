# The two entry points the README promises: `make demo` and `make test`.
# Both create a virtual environment in .venv and install the project into it first.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The three distributions of packages/ (runtime, core, developer tools), installed editable.
DISTRIBUTIONS := packages/ruth-ai-model-runtime packages/ruth-ai-core packages/ruth-ai-model-tools
PROJECT_FILES := $(addsuffix /pyproject.toml,$(DISTRIBUTIONS)) requirements-dev.txt
# The models' own pinned packages (torch, onnxruntime, LiteRT, ...) so their tests run; one file per model.
MODEL_REQUIREMENTS := $(sort $(wildcard models/*/requirements.txt models/*/requirements-dev.txt))
STAMP := $(VENV)/.installed-$(shell cat $(PROJECT_FILES) $(MODEL_REQUIREMENTS) | cksum | cut -d' ' -f1)

# make fuzz FUZZ_MINUTES=30; make soak SOAK_CAMERAS=8 SOAK_MINUTES=60
FUZZ_MINUTES ?= 5
SOAK_CAMERAS ?= 4
SOAK_MINUTES ?= 10

.PHONY: demo test bench fuzz soak install clean

install: $(STAMP)

$(STAMP): $(PROJECT_FILES) $(MODEL_REQUIREMENTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(addprefix -e ,$(DISTRIBUTIONS)) -r requirements-dev.txt \
		$(addprefix -r ,$(MODEL_REQUIREMENTS))
	rm -f $(VENV)/.installed-*
	touch $@

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python -m bench

# The wire fuzzer for minutes (a short seeded run is part of make test): messages, crashes, hangs, RSS, fds.
fuzz: $(STAMP)
	$(BIN)/python -m bench.fuzz --minutes $(FUZZ_MINUTES)

# Writer -> serve-all -> ruth-ai run for a bounded time: counts, RSS and fds over time, a growth verdict.
soak: $(STAMP)
	$(BIN)/python -m bench.soak --cameras $(SOAK_CAMERAS) --minutes $(SOAK_MINUTES)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
