# Set-up and entry points. `make demo` runs the main job, `make test` the test suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: venv test demo bench clean

venv: $(VENV)/.installed

# torch 2.13.0 first: the CPU build from this machine's disk (an unpinned torch may pull CUDA).
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev,doom]"
	touch $@

test: venv
	SDL_VIDEODRIVER=dummy HF_HUB_OFFLINE=1 $(PY) -m pytest -q

demo: venv
	SDL_VIDEODRIVER=dummy $(PY) examples/quickstart.py

bench: venv
	$(PY) benchmarks/bench_dream.py
	$(PY) benchmarks/bench_pipeline.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
