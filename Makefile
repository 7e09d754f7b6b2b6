# The two commands of the README: `make demo` and `make test`. Both create .venv if needed, install it from
# the locks (requirements/dev.lock, hash-checked, torch pinned through constraints.txt) and are safe to re-run.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# PIP_CONSTRAINT also reaches the isolated build environments of sdists (deepspeed), so no install
# anywhere pulls an unpinned, CUDA-sized torch.
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt
export ZENML_ANALYTICS_OPT_IN := false
export DS_ACCELERATOR ?= cpu
export TOKENIZERS_PARALLELISM := false

.PHONY: setup browser demo smoke test test-latest lock lint clean dashboard mlflow-ui bench docker-stage

# Exactly the lock: requirements/install.sh (pinned installers, torch via constraints.txt, then `uv pip sync`).
$(STAMP): pyproject.toml constraints.txt requirements/bootstrap.lock requirements/dev.lock requirements/install.sh
	requirements/install.sh $(VENV) dev
	touch $(STAMP)

setup: $(STAMP)

# Regenerate the locks from pyproject.toml's ranges (requirements/lock.sh); LOCK_ARGS=--upgrade moves every pin
# to the newest allowed version. Only the pinned installers are needed for it.
lock:
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --require-hashes -r requirements/bootstrap.lock
	requirements/lock.sh

# Drift check: a second environment (.venv-latest) from pyproject.toml's ranges alone, at the newest versions
# they allow, runs the suite (TEST_LATEST_ARGS, default: all of it but the slow pipeline/browser tests) and
# prints every version that differs from the lock.
test-latest:
	requirements/test-latest.sh

# The main job: set up the local stack (idempotent), run the demo pipeline, print the results and write them to
# the file the README quotes. One thread: the printed numbers depend on the floating-point path (README).
demo: setup
	$(PY) -m pipelines.stack
	OMP_NUM_THREADS=1 $(VENV)/bin/zenml pipeline run pipelines.igpo.igpo_pipeline \
		--config configs/demo_tiny_cpu.yaml
	$(PY) -m pipelines.show_results --out benchmarks/results/demo_tiny_cpu.txt

smoke: setup
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) -m igpo.smoke

# Debian's Chromium for the dashboard browser test (Playwright drives it; no browser is ever downloaded).
# Installed with apt when it is missing and we are root; otherwise the test says what is missing and skips
# (IGPO_REQUIRE_BROWSER=1, as in CI, turns that skip into a failure).
CHROMIUM := /usr/bin/chromium
browser:
	@test -x $(CHROMIUM) || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		echo "apt-get install chromium (for the dashboard browser test)" && \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; } || \
		echo "WARNING: $(CHROMIUM) missing and not installable here; the dashboard browser test will skip"

test: setup browser
	OMP_NUM_THREADS=1 $(PY) -m pytest -q

lint: setup
	$(PY) -m ruff check igpo steps pipelines tests benchmarks

clean:
	rm -rf $(VENV) .venv-latest .cache *.egg-info

mlflow-ui: setup
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/.cache/mlflow/mlflow.db

# Benchmarks (benchmarks/README.md). GPU: make bench BENCH_ARGS="--device cuda" DS_ACCELERATOR=cuda
BENCH_ARGS ?=
# The code an RL step's memory and log-prob passes are compared with (before the log-prob memory work).
BEFORE_REV ?= e3f9779
BEFORE_LABEL ?= before issue 15: an entropy in every log-prob pass, a separate old-policy pass at mu = 1
# ... and an RL step on the demo model by phase, before the sampler's early exit.
BEFORE_EARLY_EXIT_REV ?= 2e30ed7
BEFORE_EARLY_EXIT_LABEL ?= before issue 17: no early exit, noise and softmax over every position of the block
bench: setup
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) benchmarks/rollout_throughput.py $(BENCH_ARGS)
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) benchmarks/train_step.py $(BENCH_ARGS)
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) benchmarks/train_step.py --compare $(BEFORE_REV) --compare-label "$(BEFORE_LABEL)"
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) benchmarks/igpo_effect.py --workers 2 $(BENCH_ARGS)
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) benchmarks/igpo_effect.py --mode budget --workers 2 $(BENCH_ARGS)
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) benchmarks/igpo_effect.py --mode rollouts --workers 2 $(BENCH_ARGS)
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) benchmarks/igpo_effect.py --mode ablation --workers 2 --seeds 4 $(BENCH_ARGS)
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) benchmarks/fast_sampler.py $(BENCH_ARGS)
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) benchmarks/llada_sampler.py
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) benchmarks/llada_sampler.py --model-dir demo --demo-only
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) benchmarks/train_step.py --compare $(BEFORE_EARLY_EXIT_REV) \
		--compare-model demo --compare-label "$(BEFORE_EARLY_EXIT_LABEL)"
	$(PY) benchmarks/summarize.py

# Build the step image on a locally made base and run a tiny SFT in it (needs root or a Docker daemon).
docker-stage: setup
	.ci/docker-stage

# Local ZenML server with its bundled dashboard at http://127.0.0.1:8237, first-visit onboarding form cleared
# (pipelines/dashboard.py); stop it with `.venv/bin/zenml logout --local`.
dashboard: setup
	$(PY) -m pipelines.dashboard

# GPU acceptance check (benchmarks/gpu_check.py): a LLaDA-8B-shaped native model with random bf16 weights on one
# GPU, rollout tokens/s, one IGPO and one SFT step (LoRA r=128), < 8 minutes; writes benchmarks/results/gpu_check.json.
# GPU_CHECK_ARGS=--smoke runs the shrunk shape (on CPU when there is no GPU).
GPU_CHECK_ARGS ?=
.PHONY: gpu-check
gpu-check: setup
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) benchmarks/gpu_check.py $(GPU_CHECK_ARGS)
