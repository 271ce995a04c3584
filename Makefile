# The two commands a newcomer needs (as root, on a fresh Debian/Ubuntu machine):
#   make demo   start a local sandbox server, set it up and deploy the app to it
#   make test   unit tests + end-to-end tests on real sandbox servers
VENV    := .venv
FAB     := $(VENV)/bin/fab
SANDBOX := $(or $(FLASKSAMPLE_SANDBOX_DIR),/var/lib/flasksample/sandbox)
APT_DEPS := $(shell grep -v '^\#' deploy/sandbox/requirements-apt.txt) git curl shellcheck faketime pebble openssl

.PHONY: demo test unit deps venv clean-sandboxes bench

deps: venv
	@missing=$$(for p in $(APT_DEPS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then echo "installing: $$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; fi

venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q -c constraints.txt -e '.[app,test,bench]'
	touch $@

demo: deps
	$(FAB) sandbox.up --name demo --reuse
	$(FAB) -S $(SANDBOX)/ssh_config -H demo setup deploy
	@echo; echo "http://$$(awk '/^Host demo$$/{f=1} f&&/HostName/{print $$2; exit}' $(SANDBOX)/ssh_config)/ says:"; \
	curl -s "http://$$(awk '/^Host demo$$/{f=1} f&&/HostName/{print $$2; exit}' $(SANDBOX)/ssh_config)/"; echo

test: deps
	$(VENV)/bin/pytest -n 4 --dist loadgroup -rfE --durations=25 tests

unit: venv
	$(VENV)/bin/pytest tests/unit

bench: deps
	$(VENV)/bin/python -m bench

clean-sandboxes: venv
	$(FAB) sandbox.down
