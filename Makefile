# The two commands a new user needs are `make demo` and `make test`; each runs `make setup` first.
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: setup demo test lint format bench screenshots clean-demo

setup:
	@bash scripts/setup.sh

demo: setup
	$(BIN)/harvester demo --config config/demo.toml

# .ci/run and the README name this command: keep them in step.
test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Ruff (with the layering rules of docs/architecture.md), mypy --strict, and a JavaScript syntax
# check; `make test` runs the same checks as tests.
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	bash scripts/check_js.sh

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: setup
	$(BIN)/python bench/read_bench.py
	$(BIN)/python bench/capture_bench.py
	$(BIN)/python bench/flink_bench.py

# Harvests the demo twice into a temporary folder and renders each live inspector page to
# docs/screenshots/*.png and the HTML report to docs/report.png (docs/inspect.md shows them).
screenshots: setup
	$(BIN)/python scripts/screenshots.py

clean-demo:
	rm -rf demo-state
