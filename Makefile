# desk: `make run` serves the help center, `make test` runs every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PYTEST_WORKERS ?= auto

.PHONY: run test bandit test-tools dist translations extract-messages bench bench-region clean system-deps

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.run-deps: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt -c constraints.txt
	touch $@

$(VENV)/.dev-deps: requirements.txt requirements-dev.txt $(VENV)/.run-deps
	$(BIN)/pip install --quiet -r requirements-dev.txt -c constraints.txt
	touch $@

# Compiled catalogues (.mo) are build products, made from the .po sources.
translations: $(VENV)/.run-deps
	$(BIN)/pybabel compile --use-fuzzy -d translations

extract-messages: $(VENV)/.run-deps
	$(BIN)/pybabel extract -F babel.cfg -k _l --ignore-dirs='.*' --no-location --sort-output -o translations/messages.pot .
	$(BIN)/pybabel update -i translations/messages.pot -d translations --no-fuzzy-matching --ignore-obsolete

# make run PORT=8080 HOST=0.0.0.0
PORT ?= 5000
HOST ?= 127.0.0.1
run: translations
	$(BIN)/python app.py run --host $(HOST) --port $(PORT)

test: $(VENV)/.dev-deps translations test-tools bandit
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) -q

# Static security checks of desk/ and app.py (skips and their reasons in
# pyproject.toml): any finding fails `make test`. Quiet unless it finds something.
bandit: $(VENV)/.dev-deps
	@$(BIN)/bandit -q -c pyproject.toml -r desk app.py > $(VENV)/bandit.log 2>&1 \
	  || { cat $(VENV)/bandit.log; echo "bandit found problems (see above)" >&2; exit 1; }
	@echo "bandit: no findings in desk/ and app.py"

# npm test tools (axe-core for the accessibility journeys), pinned by
# package-lock.json into ./node_modules. Without npm those checks are skipped
# (CI installs npm and requires them).
test-tools:
	@if command -v npm >/dev/null; then \
	  [ node_modules/.package-lock.json -nt package-lock.json ] || npm ci --no-audit --no-fund --silent; \
	else echo "npm not found: the accessibility checks (axe-core) will be skipped"; fi

# Debian packages the browser tests need (CI runs this; needs root).
system-deps:
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium chromium-driver fonts-wqy-microhei)

clean:
	rm -rf $(VENV) .pytest_cache test-artifacts node_modules

# Benchmarks at a scale that finishes in under 10 minutes on 2 cores; writes
# bench/RESULTS.md. Needs wrk and sqlite3 (Debian; installed here if missing,
# needs root) and uses PostgreSQL at BENCH_POSTGRES_URL when reachable.
BENCH_SCALE ?= 0.1
bench: $(VENV)/.run-deps translations
	command -v wrk >/dev/null && command -v sqlite3 >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk sqlite3)
	$(BIN)/python bench/run.py --scale $(BENCH_SCALE)

# The single executable: dist/desk (Linux x86_64), built by PyInstaller from
# desk.spec with the compiled translations; tests/test_dist.py smoke-tests it.
dist: $(VENV)/.dev-deps translations
	$(BIN)/pyinstaller --noconfirm --log-level WARN --distpath dist --workpath build desk.spec
	@ls -l dist/desk

# The online region move at BENCH_SCALE (SQLite -> PostgreSQL while serving);
# writes its own section of bench/RESULTS.md.
bench-region: $(VENV)/.run-deps translations
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(BIN)/python bench/region_move.py --scale $(BENCH_SCALE)
