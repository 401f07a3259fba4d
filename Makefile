# The two commands a newcomer runs: `make demo` (install + see it trade) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo demo-web test lint bench chromium netns drill

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The console's browser tests drive Debian's Chromium (a browser downloaded by a Python package
# does not run here); installed once, as root, from the distribution's packages.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -q chromium >/dev/null 2>&1 || \
	  { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }; }

demo: install
	$(BIN)/tradefleet demo

# The demo with the console beside it: its address and a one-time login are printed; Ctrl-C ends it.
demo-web: install
	$(BIN)/tradefleet demo --web

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# The drills build hosts of their own with network namespaces: Debian's iproute2 (`ip`), as root.
netns:
	@command -v ip >/dev/null 2>&1 || { \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -q iproute2 >/dev/null 2>&1 || \
	  { apt-get update -q >/dev/null && apt-get install -y -q iproute2 >/dev/null; }; }

# Every fleet drill on hosts of its own, judged against an undisturbed run; prints the table.
drill: install netns
	$(BIN)/tradefleet drill

test: lint chromium netns
	$(BIN)/pytest -q -n 3 --dist worksteal

bench: install
	$(BIN)/tradefleet bench
