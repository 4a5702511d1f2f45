# Two commands: `make run` starts the app, `make test` runs the tests.
# Both create .venv on first use and re-install only when requirements.txt or
# pyproject.toml change (the stamp file is older than them).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Test workers: one per core (pytest-xdist). The browser tests share one worker and one Streamlit server
# (xdist_group "browser"); each worker runs torch on one thread, so workers do not fight over the cores.
JOBS ?= auto

.PHONY: run test test-fast bench mutants fuzz gpu-check clean

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

# The model upload limit in MB (`RS_MODEL_UPLOAD_MB=1000 make run`): the server enforces it for every upload
# (--server.maxUploadSize) and the sidebar's model uploader states it (it reads the same variable).
RS_MODEL_UPLOAD_MB := $(or $(RS_MODEL_UPLOAD_MB),200)

run: $(STAMP)
	@case "$(RS_MODEL_UPLOAD_MB)" in ''|0*|*[!0-9]*) \
		echo "RS_MODEL_UPLOAD_MB must be a whole number of MB (1 or more), got '$(RS_MODEL_UPLOAD_MB)'" >&2; exit 2;; esac
	$(BIN)/streamlit run app.py --server.address 127.0.0.1 --server.port 8501 --server.maxUploadSize $(RS_MODEL_UPLOAD_MB)

test: $(STAMP)
	$(BIN)/python -m pytest -n $(JOBS) --dist loadgroup --durations=15

# A developer's quick subset: no browser, no AppTest, none of the slow statistical or end-to-end tests.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -n $(JOBS) --dist loadgroup -m "not slow and not browser and not apptest"

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_sampling.py

# Deliberately broken copies of rs_core: each soundness test must fail on its bug (a few minutes).
mutants: $(STAMP)
	$(BIN)/python tests/mutation_check.py

# The property-based tests with a longer, randomized search (CI runs them derandomized, 60 examples each).
fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=long $(BIN)/python -m pytest tests/test_fuzz_*.py

# On a machine with an NVIDIA GPU: the CUDA tests and the GPU benchmarks in one markdown report
# (benchmarks/results/gpu_check.md), within about 7 minutes. No $(STAMP): a lent GPU machine has its own Python
# with torch and no network, so it runs there with python3. ARGS="--device cpu --quick" for a CPU plumbing run.
gpu-check:
	$(if $(wildcard $(BIN)/python),$(BIN)/python,python3) benchmarks/gpu_check.py $(ARGS)

clean:
	rm -rf $(VENV)
