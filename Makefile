# The README's two commands:
#   make report LANDSCAPE_DATA=/path/to/data   # set up, run the default (quick) profile, build the book
#   make test   LANDSCAPE_DATA=/path/to/data   # set up, run the test suite
# Everything is installed into .venv by `make setup` from pyproject.toml; nothing by hand.
PYTHON ?= python3
VENV ?= .venv
PROFILE ?= quick
CORES ?= 2
STUDIES ?=
PYTEST_ARGS ?=
# A relative data root is made absolute here, once: the processes it is handed to (tests that
# copy the repository elsewhere, Snakemake jobs) run in other folders, where it would mean
# something else.
ifdef LANDSCAPE_DATA
override LANDSCAPE_DATA := $(abspath $(LANDSCAPE_DATA))
export LANDSCAPE_DATA
endif
BIN := $(abspath $(VENV))/bin
RUN := PATH="$(BIN):$$PATH"

.PHONY: setup report test book clean
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[report,test,bench]"
	touch $@

# Through the launcher: after an interrupted run (even kill -9) the same command recovers the
# stale Snakemake lock; while another run is live it refuses (exit status 2).
report: setup
	$(RUN) python -m landscape workflow -- -s workflow/Snakefile --cores $(CORES) --config profile=$(PROFILE) \
	  $(if $(STUDIES),studies=[$(STUDIES)]) --rerun-incomplete --keep-going --quiet rules
	@echo "site: $(abspath _build/html/index.html)"

test: setup
	bash scripts/ensure_chromium.sh
	$(RUN) python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf _build book/runs book/_build .snakemake

# The Slurm profile on a real single-node Slurm cluster started on this machine (as root; installs
# slurm-wlm, munge and snakemake-executor-plugin-slurm where missing): the toy study through
# --profile workflow/profiles/slurm, every job checked to have gone through sbatch, its numbers
# checked against a local --cores 1 run bit for bit; the cluster is shut down afterwards
# (tests/test_slurm.py, scripts/slurm_cluster.sh). A few minutes.
.PHONY: slurm-check
slurm-check: setup
	$(RUN) PYTHON=python bash scripts/slurm_cluster.sh install
	$(RUN) LANDSCAPE_SLURM_CHECK=1 python -m pytest tests/test_slurm.py -v -rP -p no:cacheprovider $(PYTEST_ARGS)
