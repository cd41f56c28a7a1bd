# One virtual environment in .venv; torch is installed first at a pinned version (override with
# `make TORCH_VERSION=...`), so nothing else can pull a different (multi-GB CUDA) build.
PYTHON ?= python3
VENV ?= .venv
TORCH_VERSION ?= 2.13.0
BIN := $(VENV)/bin
PRESET ?= fast
# the speed and memory scripts of README's Benchmarks table (the ablations train for hours: run those by hand)
BENCHMARKS := corpus_build render_speed landmark_inference unet_vs_diffusers face_generation long_audio

.PHONY: install demo test benchmarks clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==$(TORCH_VERSION)
	$(BIN)/pip install -q -e '.[dlib,dev]'
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	$(BIN)/python -m minitalker.data.real_speech --fetch >/dev/null  # LibriVox (pocketsphinx's sdist), talking faces (psychopy's wheel), training voices (MFA's sdist)
	touch $@

install: $(BIN)/.installed

demo: install  ## the main job: speech + one photo -> talking-face video in outputs/demo/
	MINITALKER_PRESET=$(PRESET) $(BIN)/minitalker demo

test: install  ## the linter, then the whole suite: unit tests, real-data tests and every notebook (fast preset)
	$(BIN)/ruff check minitalker tests benchmarks
	MINITALKER_PRESET=fast $(BIN)/pytest -q tests notebooks --nbval-lax --durations=15

benchmarks: install  ## each script writes benchmarks/results/<script>*.json and prints its table
	set -e; for b in $(BENCHMARKS); do MINITALKER_PRESET=$(PRESET) $(BIN)/python benchmarks/$$b.py; done

clean:
	rm -rf $(VENV) data/cache outputs
