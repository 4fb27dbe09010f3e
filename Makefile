# Two commands do all the set-up on a fresh machine:
#   make demo   - install, then infer + evaluate the shared pretrained model on LFW
#                 (and write the HTML report $(OUT)/report.html)
#   make test   - install, then run the test suite (the slowest 25 tests listed at the end)
#   make test-fast - the suite without the tests marked slow
#   make test-ray  - install the ray extra (not in [all]), then run the --engine ray tests
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.massface-installed
SHARED ?= $(abspath ../shared)
OUT ?= work_dirs/demo

.PHONY: setup demo test test-fast test-ray lint bench orl-recipe clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e '.[all]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/massface-infer --model $(SHARED)/models/mobilefacenet-sirius/mobilefacenet_sirius.onnx \
		--lfw $(SHARED)/data/lfw/lfw-112x112 --pairs $(SHARED)/data/lfw/pairs.txt --out $(OUT)
	$(BIN)/massface-eval $(OUT) --json $(OUT)/eval.json --markdown $(OUT)/eval.md \
		--html $(OUT)/report.html
	@echo "Report: $(abspath $(OUT))/report.html (open it in a browser; it works offline)"

# --max-worker-restart=0: a worker that dies fails the run at once, naming its test;
# replacing it under --dist loadfile can hang the whole session (pytest-xdist #784)
PYTEST := MASSFACE_SHARED=$(SHARED) $(BIN)/python -m pytest -n 2 --dist loadfile \
	--max-worker-restart=0 --durations=25

test: $(STAMP)
	$(PYTEST)

test-fast: $(STAMP)
	$(PYTEST) -m "not slow"

# Ray Data is not in [all] (its tests start Ray and take about a minute); where it is
# installed, `make test` runs these tests too, else they skip saying why.
# Not in [all] also because, in one full `make test` run on 2026-12-04 with Ray installed,
# the xdist worker that held the tests' Ray instance later hung in a Chromium report test
# (futex wait, 10+ min); until that is understood, CI does not install Ray.
test-ray: $(STAMP)
	$(BIN)/pip install -e '.[ray]'
	MASSFACE_SHARED=$(SHARED) $(BIN)/python -m pytest -n 0 --durations=10 \
		tests/infer/test_ray_engine.py tests/align/test_align_ray.py

lint: $(STAMP)
	$(BIN)/ruff check massface tests bench

bench: $(STAMP)
	for b in bench/bench_*.py; do MASSFACE_SHARED=$(SHARED) $(BIN)/python -m bench.$$(basename $$b .py) || exit 1; done

orl-recipe: $(STAMP)
	MASSFACE_SHARED=$(SHARED) $(BIN)/python -m bench.orl_recipe

clean:
	rm -rf $(VENV) work_dirs
