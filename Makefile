# keyplan: the two commands. Each sets itself up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: quickstart test softhsm postgresql openssh venv bench lint clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	@# python-hcl2 builds its LALR parser on first use and caches it beside itself in the venv;
	@# build it once here, not once per test worker (or per keyplan process) racing to write it.
	$(BIN)/python -c "import hcl2; hcl2.parses_to_tree('a = 1\n')"
	$(BIN)/python -c "from keyplan.config.syntax import _parser; _parser()"
	@rm -f $(VENV)/.installed-*
	@touch $@

softhsm:
	@command -v softhsm2-util >/dev/null 2>&1 || { \
	  echo "installing SoftHSM2 (Debian package softhsm2)"; \
	  $(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq softhsm2 >/dev/null; }

# The PostgreSQL state backend's tests start a throwaway server from Debian's postgresql package.
postgresql:
	@command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  echo "installing PostgreSQL (Debian package postgresql)"; \
	  apt-cache policy postgresql | grep -q 'Candidate: [0-9]' || $(SUDO) apt-get update -qq; \
	  $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; }

# Approvals signed through an SSH agent are tested with a real ssh-agent, ssh-add and ssh-keygen.
openssh:
	@command -v ssh-agent >/dev/null 2>&1 && command -v ssh-keygen >/dev/null 2>&1 || { \
	  echo "installing OpenSSH's client tools (Debian package openssh-client)"; \
	  apt-cache policy openssh-client | grep -q 'Candidate: [0-9]' || $(SUDO) apt-get update -qq; \
	  $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-client >/dev/null; }

quickstart: venv
	@bash examples/quickstart/run.sh

# The suite starts many Python processes (test workers, the keyplan processes some tests run): they
# cache bytecode (keyplan's modules, pytest's rewritten test modules) even where the environment
# turned that off, instead of each compiling the same sources again. Four workers on two cores:
# many tests wait (on keyplan processes they started, emulator latency, retry backoff), and the
# others use the cores meanwhile (measured at load average 2 to 3: 195 s with two workers, 137 s with
# four; later, back to back at load 4 to 6: 123 s with six, 103 s with four); worksteal hands a
# finished worker the tests another one still has queued.
test: venv softhsm postgresql openssh
	env -u PYTHONDONTWRITEBYTECODE $(BIN)/python -m pytest -n 4 --dist worksteal -q

lint: venv
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python -m mypy keyplan providers
	$(BIN)/python -m ruff check keyplan providers tests

bench: venv
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) examples/*/.keyplan examples/*/*.kpstate.json*
