# Set-up is part of every target: each is idempotent and quick once done.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Debian commands the stack and the tests run for real: command=package.
# uWSGI compiles on install: a C compiler and the Python headers; mysqlclient (a test dependency) compiles
# against MariaDB's client library, which pkg-config finds.
DEBS_BUILD := gcc=gcc python3-config=python3-dev mariadb_config=libmariadb-dev pkg-config=pkg-config
DEBS_RUN := nginx=nginx-light
# What `flaskprod up --with monitoring` runs, and `--with postgres`.
DEBS_MONITORING := prometheus=prometheus prometheus-alertmanager=prometheus-alertmanager
DEBS_POSTGRES := initdb=postgresql pg_ctl=postgresql
# The tests run both, and check build's files with Prometheus's and Alertmanager's own tools.
DEBS_TEST := $(DEBS_RUN) $(DEBS_MONITORING) $(DEBS_POSTGRES) promtool=prometheus amtool=prometheus-alertmanager \
	mariadbd=mariadb-server mariadb-install-db=mariadb-server wrk=wrk valgrind=valgrind docker-compose=docker-compose certbot=certbot pebble=pebble rsync=rsync tini=tini \
	/usr/bin/time=time
# `make up WITH=monitoring,postgres`: up's extras, and the packages they run.
WITH ?=
DEBS_UP := $(DEBS_RUN) $(if $(findstring monitoring,$(WITH)),$(DEBS_MONITORING)) \
	$(if $(findstring postgres,$(WITH)),$(DEBS_POSTGRES))
# Test processes: most tests wait on servers starting and stopping, so one per CPU cut the
# suite's time by a third (509 s against 733 s on 2 cores, 2026-12-04), and one more than the CPUs
# by a sixth again (971 s against 1,188 s, 2026-12-07); `make test JOBS=1` runs one.
# Whole files to a worker, in file order: the `up` files share one stack per module, and their last
# test stops it (worksteal once moved that test ahead of another on the same stack).
JOBS ?= $(shell echo $$(( $$(nproc) + 1 )))
SECRET := .flaskprod/secret_key
TASKBOARD := examples/taskboard

.PHONY: up serve test lint docs clean setup

setup: $(STAMP)

$(STAMP): pyproject.toml
	@scripts/ensure-debs $(DEBS_BUILD)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

$(SECRET):
	mkdir -p $(dir $@)
	umask 077 && $(BIN)/python -c 'import secrets; print(secrets.token_hex(32))' > $@

## up: the reference app behind nginx on http://127.0.0.1:8000 (SQLite; DATABASE_URL for PostgreSQL; WITH=monitoring,postgres; Ctrl-C stops)
up: $(STAMP) $(SECRET)
	@scripts/ensure-debs $(DEBS_UP)
	cd $(TASKBOARD) && FLASK_SECRET_KEY="$$(cat $(CURDIR)/$(SECRET))" exec $(CURDIR)/$(BIN)/flaskprod up wsgi:app \
		$(if $(WITH),--with $(WITH))

## test: the whole suite against real servers
test: $(STAMP)
	@scripts/ensure-debs $(DEBS_TEST)
	@scripts/ensure-tools $(PYTHON)
	$(BIN)/python -m pytest -n $(JOBS) --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check src tests examples
	$(BIN)/mypy

## docs: regenerate the settings reference from the spec and the checks reference from the registry
docs: $(STAMP)
	$(BIN)/python -m flaskprod.reference > docs/settings.md
	$(BIN)/python -m flaskprod.checks.reference > docs/checks.md

clean:
	rm -rf $(VENV) .flaskprod .pytest_cache .mypy_cache .ruff_cache

.PHONY: bench bench-quick bench-ab bench-deploy bench-check
# Benchmarks need the test extras (uWSGI, PostgreSQL drivers) and matplotlib for the plots.
BENCH_DEPS := $(BIN)/python -c 'import matplotlib' 2>/dev/null || $(BIN)/python -m pip install -q -e '.[test,bench]'

## bench: every stack under wrk (3 s runs, three rounds at 64 connections, once at 16 and 256), SQLite and PostgreSQL; results in docs/benchmarks/
bench: $(STAMP)
	@scripts/ensure-debs $(DEBS_TEST)
	@$(BENCH_DEPS)
	$(BIN)/python -m benchmarks

## bench-ab: two stacks alternated round by round (A=name B=name or B='up:--threads 8', either with @REV for a past commit, WORKLOADS=ping,page,cpu); results in docs/benchmarks/ab/
bench-ab: $(STAMP)
	@test -n "$(A)" -a -n "$(B)" || { echo "usage: make bench-ab A=flaskprod-default B=flaskprod-uwsgi-unpinned [WORKLOADS=ping,page,cpu]"; exit 2; }
	@scripts/ensure-debs $(DEBS_TEST)
	@$(BENCH_DEPS)
	$(BIN)/python -m benchmarks.ab "$(A)" "$(B)" --workloads $(or $(WORKLOADS),ping,page,cpu)

## bench-quick: a short run (64 connections, 2 s each, no PostgreSQL) for checking changes, under 3 minutes; results in build/bench-quick/
bench-quick: $(STAMP)
	@scripts/ensure-debs $(DEBS_RUN) wrk=wrk
	@$(BENCH_DEPS)
	$(BIN)/python -m benchmarks --quick

## bench-check: `flaskprod check` on a generated project of 2,000 modules, this tree beside REV=<git revision> when given (3 rounds alternated); results in docs/benchmarks/check/
bench-check: $(STAMP)
	@scripts/ensure-debs /usr/bin/time=time
	$(BIN)/python -m benchmarks.check $(if $(REV),--rev $(REV))

## bench-deploy: a code change shipped under load, flaskprod deploy against the guide's HUP and restart, with a new connection per request and with keep-alive clients (3 rounds each, under 10 minutes); results in docs/benchmarks/deploy/ and deploy-keep-alive/
bench-deploy: $(STAMP)
	@scripts/ensure-debs $(DEBS_RUN)
	$(BIN)/python -m benchmarks.deploy
	$(BIN)/python -m benchmarks.deploy --keep-alive
