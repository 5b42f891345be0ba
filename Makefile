# The two commands a newcomer runs: `make demo` (the main job) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
export AMENT_PREFIX_PATH := $(abspath $(VENV))
# Keep torch from oversubscribing the 2-core CI machine when several test processes run.
export OMP_NUM_THREADS ?= 2

.PHONY: setup test lint unit demo clean

setup:
	bash scripts/setup_venv.sh

lint: setup
	$(VENV)/bin/ruff check .

# The whole pytest session runs inside an isolated network namespace (see scripts/run_tests.sh).
test: setup lint
	bash scripts/run_tests.sh $(PYTEST_ARGS)

demo: setup
	$(PY) -m bdc_occ_ros.demo $(DEMO_ARGS)

clean:
	rm -rf build install log demo_output .pytest_cache
