# asvp-bench: `make demo` and `make test` each set everything up on a fresh machine.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
# Keeps every pip install on the pinned torch/torchvision (see constraints.txt).
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt
# Offline-friendly defaults: no model-hub lookups, no display for plots.
export HF_HUB_OFFLINE := 1
export MPLBACKEND := Agg

.PHONY: install demo test lint bench gpu-check replicate-table2 slurm-up slurm-down clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

demo: install
	$(BIN)/asvp-bench run experiments/demo.yaml
	$(BIN)/asvp-bench report experiments/demo.yaml

# The paper's Table 2 grid: preflight (data, checkpoint, tracking, executor; stops and submits
# nothing if anything is missing), then submit (SLURM; EXECUTOR=local on one machine), follow
# until every cell has ended, and report into results/table2/ (REPORT_DIR to change it).
EXECUTOR ?= slurm
TABLE2 ?= experiments/table2.yaml
replicate-table2: install
	$(BIN)/asvp-bench run $(TABLE2) --executor $(EXECUTOR) --wait
	$(BIN)/asvp-bench report $(TABLE2) $(if $(REPORT_DIR),--out $(REPORT_DIR))

lint: install
	$(BIN)/ruff check .

test: install lint
	$(BIN)/python -m pytest -q

# The speed benchmarks (perf/): how fast the CLI answers (--help, validate with no data; median
# of 5 fresh processes against issue 13's targets), selection time and peak memory per strategy
# (20k and 200k pools), then the proxy round three ways and an ImageNet-sized memory-mapped round,
# then the harness at 110, 330 and 990 cells of fake finished runs (status, report, run --dry-run,
# re-submission against a local MLflow server; perf.harness_scale); each writes its section of
# docs/benchmarks.md.
# BENCH_DEVICE=cuda on a GPU machine (adds the 50k selections from the 1.28M pool).
BENCH_DEVICE ?= cpu
bench: install
	$(BIN)/python -m perf.cli_latency
	$(BIN)/python -m perf.selection --device $(BENCH_DEVICE)
	$(BIN)/python -m perf.proxy_round --device $(BENCH_DEVICE)
	$(BIN)/python -m perf.harness_scale
	$(if $(filter cuda%,$(BENCH_DEVICE)),$(BIN)/python -m perf.finetune --device $(BENCH_DEVICE) --augment official)

# One command on one GPU (H100/H200), under 8 minutes (each step killed past its budget): the
# CUDA-only tests, one demo cell on CUDA (wall time, test accuracies), fine-tuning images/s of a
# ResNet-50 at 224 px fp32 vs mixed with the official augmentation in loader workers, and the
# GPU parts of `make bench` at sizes that fit; writes the "GPU check" section of
# docs/benchmarks.md with the GPU's name. Without CUDA it stops at once (exit status 2).
# `python -m perf.gpu_check --plan` lists the steps, their budgets and the tests.
gpu-check: install
	$(BIN)/python -m perf.gpu_check

# A single-node SLURM cluster on this machine (root; Debian/Ubuntu), for trying the slurm executor.
slurm-up:
	cluster/local-slurm.sh up

slurm-down:
	cluster/local-slurm.sh down

clean:
	rm -rf results/demo .asvp mlflow.db mlruns
