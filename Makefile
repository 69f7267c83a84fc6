# Two entry points that do all the set-up themselves: `make demo` and `make test`.
# The venv is built from this project's own files; torch is pinned to the tested build here
# (a CPU wheel on machines without CUDA), while pyproject.toml keeps a range for GPU users.
PYTHON ?= python3
VENV ?= .venv
TORCH_VERSION ?= 2.13.0
# Test files run in this many pytest-xdist workers (a file's tests stay on one worker): while
# the deployment tests wait on heartbeats and round timeouts, another file trains. The suite is
# mostly CPU-bound on 2 cores (10.5 min in one process, 10.2 with 2 workers, 10.4 with 3).
# TEST_WORKERS=0 runs everything in this one process.
TEST_WORKERS ?= 2
# One torch/OpenMP thread per process while testing: two workers (and the sites and servers
# they start) on 2 cores otherwise run 2 threads each and wait on one another (9:13 warm and
# 9:41 in a fresh clone against 9:51-10:10 for the whole suite here; 6.5-8.3 min of CPU time
# against 8-9).
TEST_THREADS ?= 1
BIN := $(VENV)/bin
STAMP := $(VENV)/.medgan-installed
export FLWR_DISABLE_UPDATE_CHECK := 1
export RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO := 0

.PHONY: demo test bench quality venv clean

$(STAMP): pyproject.toml Makefile
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "medgan-fl needs Python 3.11+, found " + sys.version.split()[0]'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "torch==$(TORCH_VERSION)"
	$(BIN)/python -m pip install --quiet -e ".[test]" "torch==$(TORCH_VERSION)"
	@touch $@

venv: $(STAMP)

# The demo's run folder (set DEMO_OUT=DIR rather than --out in ARGS: the audit reads it too).
ifndef DEMO_OUT
DEMO_OUT := runs/demo-$(shell date +%Y%m%d-%H%M%S)
endif

# The demo is a short run (20 rounds of 10 steps): it takes the recipe that learns fastest in a
# few dozen rounds, the minimax loss and one shared last generator block (FRD 37 at round 20
# against the defaults' 94); the defaults are tuned for the quality benchmark's ~250 rounds
# (README, "What quality to expect"). DEMO_FLAGS= runs the defaults.
DEMO_FLAGS ?= --loss minimax --set site-output-layer=false

demo: $(STAMP)
	$(BIN)/medgan simulate --out $(DEMO_OUT) $(DEMO_FLAGS) $(ARGS)
	$(BIN)/medgan audit --run $(DEMO_OUT)

test: $(STAMP)
	$(BIN)/ruff check --select F,E9 --exclude .venv .
	OMP_NUM_THREADS=$(TEST_THREADS) $(BIN)/python -m pytest -q -p no:cacheprovider \
		-n $(TEST_WORKERS) --dist loadfile $(ARGS)

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[bench]" "torch==$(TORCH_VERSION)"
	$(BIN)/python benchmarks/run.py $(ARGS)

quality: $(STAMP)
	$(BIN)/python benchmarks/quality.py $(ARGS)

clean:
	rm -rf $(VENV) runs
