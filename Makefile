# The two commands of the README: `make demo` and `make test`. Both create .venv if needed, install the
# project with torch pinned through constraints.txt, and are safe to re-run.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# PIP_CONSTRAINT also reaches the isolated build environments of sdists (deepspeed), so no install
# anywhere pulls an unpinned, CUDA-sized torch.
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt
export ZENML_ANALYTICS_OPT_IN := false
export DS_ACCELERATOR ?= cpu
export TOKENIZERS_PARALLELISM := false

.PHONY: setup demo smoke test lint clean dashboard mlflow-ui bench docker-stage

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

# The main job: set up the local stack (idempotent), run the demo pipeline, print the results.
demo: setup
	$(PY) -m pipelines.stack
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(VENV)/bin/zenml pipeline run pipelines.igpo.igpo_pipeline \
		--config configs/demo_tiny_cpu.yaml
	$(PY) -m pipelines.show_results

smoke: setup
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) -m igpo.smoke

test: setup
	OMP_NUM_THREADS=1 $(PY) -m pytest -q

lint: setup
	$(PY) -m ruff check igpo steps pipelines tests benchmarks

clean:
	rm -rf $(VENV) .cache *.egg-info

mlflow-ui: setup
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/.cache/mlflow/mlflow.db

# Benchmarks (benchmarks/README.md). GPU: make bench BENCH_ARGS="--device cuda" DS_ACCELERATOR=cuda
BENCH_ARGS ?=
bench: setup
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) benchmarks/rollout_throughput.py $(BENCH_ARGS)
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) benchmarks/train_step.py $(BENCH_ARGS)
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) benchmarks/igpo_effect.py --workers 2 $(BENCH_ARGS)
	$(PY) benchmarks/summarize.py

# Build the step image on a locally made base and run a tiny SFT in it (needs root or a Docker daemon).
docker-stage: setup
	.ci/docker-stage

# Local ZenML server with its bundled dashboard at http://127.0.0.1:8237; stop it with `zenml logout --local`.
# The first-visit survey is cleared for the local user before the server starts (the dashboard shows it while
# either flag is unset, and the server's REST API drops the email flag, so it is set on the local store).
dashboard: setup
	$(PY) -c "from zenml.client import Client; c = Client(); u = c.active_user; \
c.update_user(u.id, updated_email_opt_in=False, updated_metadata={**(u.user_metadata or {}), 'finished_onboarding_survey': True})"
	ZENML_AUTO_OPEN_DASHBOARD=false $(VENV)/bin/zenml login --local
	@echo "Dashboard: http://127.0.0.1:8237  (stop: $(VENV)/bin/zenml logout --local)"
