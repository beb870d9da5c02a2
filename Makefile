# Fixed target names: CI, the README and other tools call these.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
LABCTL := tests/lab/labctl
# Two lanes at once; tests/run says which tests share lab state and run in order.
TEST_CMD := tests/run

.PHONY: setup lab lab-down test demo bench sanity lint clean

setup: $(VENV)/.installed .ci/.debian-installed ansible_collections/cutover/migration

# ansible.cfg's collections_path finds cutover.migration.* in this working tree through this link.
ansible_collections/cutover/migration:
	mkdir -p ansible_collections/cutover && ln -sfn ../.. ansible_collections/cutover/migration

.ci/.debian-installed: .ci/debian-packages.txt
	.ci/install-debian-packages
	@touch $@

$(VENV)/.installed: requirements-dev.txt requirements.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q -r requirements-dev.txt
	@touch $@

lab: setup
	$(LABCTL) up

lab-down:
	$(LABCTL) down

test: lab
	$(TEST_CMD)

demo: lab
	tests/lab/demo

bench: lab
	@set -e; for script in benchmarks/*.py; do \
	  [ -e "$$script" ] || continue; echo "== $$script"; $(PY) "$$script"; done

sanity: setup
	.ci/sanity

lint: setup
	.ci/lint

clean: lab-down
	rm -rf $(VENV) .ci/.debian-installed tests/lab/state
