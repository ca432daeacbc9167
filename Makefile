# Brigade: the operator's entry points. `make help` lists them.
#
# ENV picks the inventory (local, staging, production). The local environment
# is the default; its vault password is generated on first use. Other
# environments ask for their vault password, or read it from VAULT_PASSWORD_FILE.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

ENV ?= local
VENV := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg

INVENTORY := inventories/$(ENV)
ifeq ($(ENV),local)
VAULT_PASSWORD_FILE ?= .local/vault-password-local
else
VAULT_PASSWORD_FILE ?= prompt
endif
# Extra ansible-playbook arguments, e.g. ARGS='-e app_rollback_release=1.0.0-abc'.
ARGS ?=
# A prebuilt app artifact (a directory `make artifact` made): `make artifact`
# writes it there, `make deploy` ships it instead of building one from app/.
# Empty (the default): `make artifact` uses dist/brigade-api and deploy builds.
ARTIFACT ?=
ANSIBLE_PLAYBOOK := ansible-playbook -i $(INVENTORY) --vault-id $(ENV)@$(VAULT_PASSWORD_FILE) $(ARGS)

.PHONY: help up down test lint bench venv engine image secrets site deploy rolling-update activate rollback health check-env
.PHONY: artifact lint-security audit ci-credentials
.PHONY: backup restore drill

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

check-env:
	@[ -d "$(INVENTORY)" ] || { echo "brigade: unknown environment '$(ENV)': there is no $(INVENTORY)/ (choose local, staging or production)." >&2; exit 2; }

venv: ## Create the control-node virtualenv (.venv) from requirements-control.txt
	@scripts/venv.sh

engine: ## Install and start the container engine if none answers
	@scripts/engine.sh

image: engine ## Build the Debian 12 base image if the recipe changed
	@scripts/image.sh

secrets: venv ## Generate the local environment's vault password and secrets (first use)
	@$(VENV)/bin/python scripts/local_secrets.py

up: ## Provision the whole stack onto the local environment and print where to look
	@scripts/up.sh

down: venv ## Remove the local environment's containers and network
	@$(ANSIBLE_PLAYBOOK) playbooks/local_env.yml -e local_env_state=absent

site: venv check-env ## Converge the whole stack on ENV (default local)
	@$(ANSIBLE_PLAYBOOK) playbooks/site.yml

deploy: venv check-env ## Ship a new app release, host by host, with no dropped request (ARTIFACT=dir: a prebuilt one)
	@$(ANSIBLE_PLAYBOOK) playbooks/deploy.yml $(if $(ARTIFACT),-e 'app_artifact_dir=$(abspath $(ARTIFACT))')

rolling-update: venv check-env ## Roll config changes or OS upgrades over the app hosts
	@$(ANSIBLE_PLAYBOOK) playbooks/rolling_update.yml

# HOSTS: the held app hosts to put back (an Ansible --limit pattern, e.g. app1 or app1:app3).
HOSTS ?=
activate: venv check-env ## Put app hosts a failed rollout held out back into service, after their health gate (HOSTS=app1)
	@[ -n "$(HOSTS)" ] || { echo "brigade: name the hosts to put back: make activate HOSTS=app1 (make health lists the held ones)." >&2; exit 2; }
	@$(ANSIBLE_PLAYBOOK) playbooks/rolling_update.yml --limit '$(HOSTS)' -e rolling_update_action=activate -e rolling_update_activate_held=true

rollback: venv check-env ## Go back to the previous healthy release, host by host
	@$(ANSIBLE_PLAYBOOK) playbooks/rollback.yml

health: venv check-env ## Check every tier and print a table; fails if anything is unhealthy
	@$(ANSIBLE_PLAYBOOK) playbooks/healthcheck.yml

backup: venv check-env ## Take a backup set: pgBackRest, encrypted exports, checksums, metrics
	@$(ANSIBLE_PLAYBOOK) playbooks/backup.yml

# The local environment's database host confirms itself; elsewhere pass ARGS='-e restore_confirm=<host>'.
RESTORE_CONFIRM := $(if $(filter local,$(ENV)),-e restore_confirm=db1,)
restore: venv check-env ## Restore the database (latest; ARGS='-e restore_target_time=... / -e restore_set=...')
	@$(ANSIBLE_PLAYBOOK) $(RESTORE_CONFIRM) playbooks/restore.yml

drill: venv check-env ## Restore the latest backup into a throwaway cluster and report its age
	@$(ANSIBLE_PLAYBOOK) playbooks/restore_drill.yml

lint: venv ## yamllint, ansible-lint (production profile), ruff, actionlint
	@scripts/lint.sh

lint-security: venv ## ansible-lint's security-focused pass (.config/ansible-lint-security.yml), also in make lint
	@scripts/lint.sh ansible-security

audit: venv ## pip-audit of app/requirements.lock; fails on high-severity or known-exploited findings (needs the internet)
	@scripts/audit.sh

artifact: ## Build the app artifact once (wheel, wheelhouse, SHA256SUMS) into ARTIFACT (default dist/brigade-api)
	@scripts/artifact.sh $(or $(ARTIFACT),dist/brigade-api)

ci-credentials: ## CI: write the deploy credentials from BRIGADE_* variables to files only the runner reads
	@scripts/ci_credentials.sh

test: ## Every check: lint, Python tests, Molecule scenarios, the local stack
	@scripts/test.sh

bench: ## Performance figures (medians over several runs)
	@scripts/bench.sh

.PHONY: drills
drills: venv ## Failure drills under load against the local environment (make up first); writes reports/drills.md
	@python -m pytest -v -p no:cacheprovider tests/drills
