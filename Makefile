# make figures   set up if needed, then run the paper's figure notebooks and the explorer on the
#                embedded MNIST digits, JOBS=2 at a time, and write the report
# make lessons   the lessons (4-6) into the same results folder (the report then has them too)
# make all       both
# make test      set up if needed, then the unit tests and a smoke run of every notebook
# make setup     create .venv (torch 2.14.1, torchvision 0.29.1, the lib with its dev extra) and its kernel
# make sweep     five seeds x {embedded MNIST, Fashion-MNIST} through the figure notebooks and
#                the lessons: the spread across seeds and each claim's k of n in
#                results/seeds/index.html (sweeps/seeds.toml)
# make student  the lessons' student edition (no solutions) in student/
# make paper     the paper's setting: full MNIST, 20 epochs (needs `make mnist` first)
# make mnist     download full MNIST into data/ (needs the internet)

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.nnspaces-setup
PROFILE ?= default
JOBS    ?= 2

.PHONY: setup figures lessons all sweep paper student test lint mnist clean-results

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m ipykernel install --sys-prefix --name nnspaces --display-name "Python (nnspaces)"
	touch $(STAMP)

figures: setup
	$(PY) -m nnspaces run --profile $(PROFILE) --kind figure --kind tool --jobs $(JOBS)

lessons: setup
	$(PY) -m nnspaces run --profile $(PROFILE) --kind lesson --jobs $(JOBS)

all: figures lessons

sweep: setup
	$(PY) -m nnspaces sweep sweeps/seeds.toml

paper: setup
	$(PY) -m nnspaces run --profile paper

student: setup
	$(PY) -m nnspaces student --out student

test: setup
	$(PY) -m pytest

lint: setup
	$(PY) -m ruff check lib tests bench notebooks
	$(PY) -m ruff format --check lib tests bench

mnist: setup
	$(PY) -c "import torchvision; [torchvision.datasets.MNIST('data', train=t, download=True) for t in (True, False)]"

clean-results:
	rm -rf results/smoke results/default results/paper
