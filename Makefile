# Common tasks. `make setup` is implied by every target that needs Python.
PY := .venv/bin/python
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: setup demo test test-slow lint bench zoo-train zoo-evaluate clean

setup:
	bash scripts/setup.sh

demo:
	./run.sh

test: setup
	$(PY) -m pytest -q

test-slow: setup
	$(PY) -m pytest -q -m slow

lint: setup
	$(PY) -m ruff check zoo trainers tests bench

bench: setup
	$(PY) -m bench.run_all

# Retrain one pretrained model from its recipe and re-evaluate it:
#   make zoo-train NAME=dvae_fashion_mnist
# (generators, prior_*, train with trainers.train_prior; publish evaluates their samples).
zoo-train: setup
	$(PY) -m $(if $(filter prior_%,$(NAME)),trainers.train_prior,trainers.train) \
		--config=configs/$(NAME).json --model_dir=runs/zoo/$(NAME)
	$(PY) -m trainers.publish --name=$(NAME) --model_dir=runs/zoo/$(NAME)

clean:
	rm -rf runs exports .pytest_cache
