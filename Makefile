# The two commands a fresh machine needs: `make run` and `make test`. Both set up .venv first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# a profile file that exists and loads (one written by an older version is measured again)
VALID := $(BIN)/python -c "import sys; from sim.profile import load_profile; load_profile(sys.argv[1])" 2>/dev/null
# Debian's Chromium for the real-browser test of the app (Playwright drives it; nothing is downloaded at test time)
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

.PHONY: run test test-suites lint bench clean app

# liboqs: the build for our machines beside the checkout (../shared/liboqs) unless OQS_INSTALL_PATH names one;
# without either, the liboqs provider reports itself unavailable and its tests skip with that reason.
SHARED_OQS := $(abspath ../shared/liboqs)
OQS_INSTALL_PATH ?= $(if $(wildcard $(SHARED_OQS)/lib/liboqs.so*),$(SHARED_OQS),)
export OQS_INSTALL_PATH

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,liboqs]'
	touch $(STAMP)

$(CHROMIUM):
	$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends chromium

# The paper scenario in both modes (simulated), then the twin loop on this machine: calibrate (once), run the
# twin in sequential mode and fit its code-path overheads from that run (once, and again when hw/fit.py changes),
# then predict the *concurrent* run with the fitted profile, run it for real and compare (held out: the fit never
# saw concurrent mode).
# make run's twin comparison: 40 rounds (~1.5 s) outlast the devices' first frames (10 rounds, 0.3 s, did not:
# the comparison had no telemetry)
TWIN_ROUNDS := 40

run: $(STAMP)
	$(BIN)/pqtwin sim scenarios/paper-3node.yaml --mode both --out runs/paper-3node --force
	$(VALID) runs/local-profile.yaml || $(BIN)/pqtwin calibrate --out runs/local-profile.yaml --name local
	{ $(VALID) runs/local-fitted.yaml && [ runs/local-fitted.yaml -nt hw/fit.py ]; } || { \
	  $(BIN)/pqtwin hw run scenarios/localhost.yaml --mode sequential \
	  --out runs/localhost-train --force && $(BIN)/pqtwin calibrate --from-run runs/localhost-train \
	  --base runs/local-profile.yaml --out runs/local-fitted.yaml --name local-fitted; }
	$(BIN)/pqtwin sim scenarios/localhost.yaml --mode both --rounds-in-turn --profile runs/local-fitted.yaml \
	  --set workload.fl.rounds=$(TWIN_ROUNDS) --out runs/localhost-sim --force
	$(BIN)/pqtwin hw run scenarios/localhost.yaml --mode both --rounds $(TWIN_ROUNDS) --out runs/localhost-hw --force
	@echo "paper comparison: runs/paper-3node/modes.json; twin report: runs/localhost-hw/compare/"
	$(BIN)/pqtwin compare runs/localhost-sim runs/localhost-hw --at-speed  # each mode; ends with the reduction and fidelity lines

test: $(STAMP) $(CHROMIUM)
	$(BIN)/ruff check sim hw pqtwin tests bench app.py app_pages
	$(BIN)/ruff format --check sim hw pqtwin tests bench app.py app_pages
	PYTHONPATH=. $(BIN)/lint-imports
	$(BIN)/python -m pytest -q -n 2 --dist worksteal -m "not suites" --durations=25  # the slowest, to keep the suite near 10 min

# Every KEM x signature x rekey combination the providers implement, each a real 2-round twin run (~4 min)
test-suites: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 -m suites

lint: $(STAMP)
	$(BIN)/ruff check sim hw pqtwin tests bench app.py app_pages
	$(BIN)/ruff format --check sim hw pqtwin tests bench app.py app_pages
	$(BIN)/mypy sim hw pqtwin app_pages app.py
	PYTHONPATH=. $(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/python bench/sim_speed.py
	$(BIN)/python bench/sim_scale.py
	$(BIN)/python bench/crypto_overhead.py
	$(BIN)/python bench/twin_fidelity.py
	$(BIN)/python bench/startup.py  # help <= 0.3 s, the paper scenario x 30 in both modes <= 1.5 s (issue 11)

# The malformed-input corpus at full size: >= 2,000 cases, 0 tracebacks, hangs or runs over 1 GiB (make test runs
# a few hundred of them: tests/test_input_hardening.py)
.PHONY: fuzz
fuzz: $(STAMP)
	$(BIN)/python bench/fuzz_inputs.py --n 2000
	$(BIN)/python bench/fuzz_rundirs.py --n 2000  # damaged run directories for compare, report, the fit, recover
	$(BIN)/python bench/fuzz_twin.py  # the twin's front door: 100,000 fuzzed frames and 1,000 strays during a run

# The what-if explorer for architects and teachers (http://localhost:8501)
app: $(STAMP)
	$(BIN)/streamlit run app.py

clean:
	rm -rf $(VENV) runs .pytest_cache
