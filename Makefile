# The two commands: `make run` and `make test`. Everything installs itself into .venv from requirements.lock.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-lock
CONFIG ?= configs/full_flow_config.yaml
DATASET := datasets/fashion-mnist
STATE ?= $(or $(MLOPS_HOME),$(CURDIR)/.mlops)
PREFECT_ENV := PREFECT_HOME=$(STATE)/prefect PREFECT_SERVER_ANALYTICS_ENABLED=false \
	PREFECT_API_DATABASE_CONNECTION_URL=sqlite+aiosqlite:///$(STATE)/prefect/prefect.db MLOPS_REPO_ROOT=$(CURDIR)

UV_LOCK_ARGS := --generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
	--index-url https://pypi.org/simple --no-header --annotation-style line -q

.PHONY: screenshots stack-images stack-up stack-demo stack-down lock-images install run train data monitor prefect-server worker training-worker serve test test-fast lint format bench lock clean-state help secrets compose-config stack-local stack-local-up

help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

install: $(STAMP) ## create .venv from requirements.lock, with the `mlops` command (quick when nothing changed)

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	@# the checkout itself, editable, for the `mlops` command (its dependencies are all in the lock)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@cp requirements.lock $(STAMP)

data: install ## build the Fashion-MNIST demo dataset repository (tags v1.0, v2.0) if missing
	$(BIN)/python datasets/build_fashion_mnist.py --repo $(DATASET)

run: install data ## run the full flow on configs/full_flow_config.yaml (CONFIG=... for another), then register every flow in Prefect
	$(BIN)/python run_flow.py --config $(CONFIG)
	$(BIN)/mlops deployments apply

train: install data ## run the train flow alone
	$(BIN)/python run_flow.py --config configs/train_config.yaml

monitor: install ## run the monitor flow once now (drift and live quality of the production model)
	$(BIN)/python run_flow.py --config configs/monitor_config.yaml

prefect-server: install ## a Prefect server on 127.0.0.1:4200 over the state folder's database (UI included)
	$(PREFECT_ENV) $(BIN)/prefect server start --host 127.0.0.1 --port 4200

worker: install ## a process worker on the monitor pool, for the weekly schedule (needs make prefect-server)
	$(PREFECT_ENV) PREFECT_API_URL=http://127.0.0.1:4200/api $(BIN)/prefect worker start --pool monitor --type process

training-worker: install ## a process worker on the training pool: retraining started by the monitor (or by hand)
	$(PREFECT_ENV) PREFECT_API_URL=http://127.0.0.1:4200/api $(BIN)/prefect worker start --pool training --type process

serve: install ## the serving service on http://127.0.0.1:4242 (embedded defaults)
	$(BIN)/python -m uvicorn --factory services.dl_service.app:create_app --host 127.0.0.1 --port 4242

test: install ## the whole test suite
	$(BIN)/python -m pytest $(PYTEST_ARGS)

screenshots: install ## retake the README's screenshots (docs/images) from the tests that open the pages in Chromium
	MLOPS_SCREENSHOT_DIR=$(CURDIR)/docs/images $(BIN)/python -m pytest -q tests/service/test_web_page.py tests/ops/test_consoles.py

test-fast: install ## unit tests: no flows, no training, no apt-get, PostgreSQL, Chromium or Docker
	$(BIN)/python -m pytest -m "not flow and not slow and not apt and not postgres and not chromium and not containers" $(PYTEST_ARGS)

lint: install ## ruff (lint + format check) and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy configs tasks flows services run_flow.py datasets/build_fashion_mnist.py deployments/stack

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install data ## benchmarks (after make run): input pipeline, serving vs peers, drift alarm rates, trust, accuracy estimation, promotion gate, review queue
	$(BIN)/python benchmarks/input_pipeline.py
	$(BIN)/python benchmarks/serving.py
	$(BIN)/python benchmarks/batch_wait.py
	$(BIN)/python benchmarks/server_stack.py
	$(BIN)/python benchmarks/log_commit.py
	$(BIN)/python benchmarks/monitoring.py
	$(BIN)/python benchmarks/trust.py
	$(BIN)/python benchmarks/accuracy_estimation.py
	$(BIN)/python benchmarks/promotion_gate.py
	$(BIN)/python benchmarks/flywheel.py

lock: ## rewrite requirements.lock from the current .venv
	{ head -2 requirements.lock; $(BIN)/pip freeze --all | grep -vE '^(pip|setuptools|wheel)=='; } > requirements.lock.new
	mv requirements.lock.new requirements.lock

secrets: install ## write .env with a random value for every secret of the stack, the model signing key and a TLS certificate (kept if they exist)
	$(BIN)/python -m deployments.stack.write_secrets

compose-config: install ## validate docker-compose.yml with Docker Compose v2 (needs .env: make secrets)
	"$$($(BIN)/python -c 'from deployments.stack.servers import compose_binary; print(compose_binary())')" config -q \
		&& echo "docker-compose.yml is valid"

stack-local: install data ## the compose stack's servers as local processes: full flow + monitor through them
	$(BIN)/python -m deployments.stack.local_stack demo

stack-local-up: install ## start the compose stack's servers as local processes and wait (Ctrl-C stops them)
	$(BIN)/python -m deployments.stack.local_stack up

# The registry's demo dataset when it has none: small (a few hundred images, the demo trains in
# seconds) or full (Fashion-MNIST's 70,000).
stack-up: export MLOPS_DEMO_DATASET_SIZE ?= small

stack-images: install ## build every image of docker-compose.yml here (no registry needed: Debian base from apt sources, test stand-ins)
	$(BIN)/python -m deployments.stack.containers images

stack-up: install ## start the container stack (writes .env if missing) and wait until every container is healthy
	$(BIN)/python -m deployments.stack.containers up

stack-demo: install ## in the running stack: full flow on a worker of "another host", traffic and a rollout through nginx, the monitor
	$(BIN)/python -m deployments.stack.containers demo

stack-down: install ## stop and remove the stack's containers (VOLUMES=1 deletes its data too)
	$(BIN)/python -m deployments.stack.containers down $(if $(VOLUMES),--volumes)

lock-images: install ## write requirements/serve.txt and app.txt for the images: the extras serve and train at the lock's pins, with hashes
	SSL_CERT_FILE=$${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt} $(BIN)/uv pip compile pyproject.toml --extra serve \
		-c requirements.lock $(UV_LOCK_ARGS) -o requirements/serve.txt
	SSL_CERT_FILE=$${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt} $(BIN)/uv pip compile pyproject.toml --extra train \
		-c requirements.lock $(UV_LOCK_ARGS) -o requirements/app.txt

clean-state: ## delete the embedded state ($$MLOPS_HOME, default .mlops) except the DVC remote that dataset repositories push to
	@if [ -d "$(STATE)" ]; then find "$(STATE)" -mindepth 1 -maxdepth 1 ! -name dvc-remote -exec rm -rf {} +; \
	else echo "no state folder at $(STATE)"; fi
