# rulehost: every target CI needs runs from here. `make help` lists them.
.DEFAULT_GOAL := help
SHELL := /bin/bash

CARGO ?= cargo
WASM_TARGET := wasm32-wasip2
COMPONENTS := build/components
TEST_COMPONENTS := build/test-components
# Rule crates and test (hostile) components: every folder with a Cargo.toml.
RULE_CRATES := $(patsubst plugins/rules/%/Cargo.toml,%,$(wildcard plugins/rules/*/Cargo.toml))
TEST_CRATES := $(patsubst plugins/test-components/%/Cargo.toml,%,$(wildcard plugins/test-components/*/Cargo.toml))
# Cargo's output folder: honours CARGO_TARGET_DIR like cargo itself.
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
RULEHOST := $(TARGET_DIR)/release/rulehost
# `rulehost serve` (Kafka and Redis) is the host's cargo feature `serve`: librdkafka is built
# from C source once. Every target here turns it on; a plain `cargo build` goes without.
SERVE := --features rulehost/serve
DEMO_DATA := demo/databricks-audit-sample.jsonl
# The Python rule runtime: componentize-py (pinned in python/requirements.txt) in a
# virtualenv of its own, building python/ against wit/rulehost.wit's `rule-runtime` world.
PYTHON ?= python3
PYTHON_VENV := build/python-venv
PYTHON_RUNTIME := build/runtimes/python.wasm

export RULEHOST_COMPONENTS := $(abspath $(COMPONENTS))
export RULEHOST_TEST_COMPONENTS := $(abspath $(TEST_COMPONENTS))
export RULEHOST_PYTHON_RUNTIME := $(abspath $(PYTHON_RUNTIME))

.PHONY: help
help: ## Show this help
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

.PHONY: wasm-target
wasm-target: ## Install the wasm32-wasip2 Rust target if missing
	@rustup target list --installed 2>/dev/null | grep -qx $(WASM_TARGET) || rustup target add $(WASM_TARGET)

.PHONY: plugins
plugins: wasm-target python-runtime ## Build every rule under plugins/rules into build/components, and the Python runtime
	$(CARGO) build --profile plugin --target $(WASM_TARGET) $(addprefix -p ,$(subst _,-,$(RULE_CRATES)))
	@mkdir -p $(COMPONENTS)
	@for c in $(RULE_CRATES); do cp $(TARGET_DIR)/$(WASM_TARGET)/plugin/$$c.wasm $(COMPONENTS)/; done

$(PYTHON_VENV)/installed: python/requirements.txt
	$(PYTHON) -m venv $(PYTHON_VENV)
	$(PYTHON_VENV)/bin/pip install --quiet --disable-pip-version-check --requirement python/requirements.txt
	@touch $@

$(PYTHON_RUNTIME): $(PYTHON_VENV)/installed $(wildcard python/*.py) wit/rulehost.wit
	@mkdir -p $(dir $@)
	VIRTUAL_ENV=$(abspath $(PYTHON_VENV)) $(PYTHON_VENV)/bin/componentize-py --quiet \
		--wit-path wit --world rule-runtime componentize --python-path python \
		--output $@ rulehost_runtime

.PHONY: python-runtime
python-runtime: $(PYTHON_RUNTIME) ## Build the Python rule runtime (componentize-py) into build/runtimes/python.wasm

.PHONY: test-components
test-components: wasm-target ## Build the hostile test components into build/test-components
	$(CARGO) build --profile plugin --target $(WASM_TARGET) $(addprefix -p ,$(subst _,-,$(TEST_CRATES)))
	@mkdir -p $(TEST_COMPONENTS)
	@for c in $(TEST_CRATES); do cp $(TARGET_DIR)/$(WASM_TARGET)/plugin/$$c.wasm $(TEST_COMPONENTS)/; done

.PHONY: build
build: plugins ## Build the rulehost binary and the rule components
	$(CARGO) build --release -p rulehost $(SERVE)

.PHONY: demo
demo: build ## Evaluate the bundled Databricks audit sample with every rule in rules-tests/
	$(RULEHOST) eval --rules rules-tests $(DEMO_DATA)

.PHONY: rules-test
rules-test: build ## Run the YAML tests of every spec in rules-tests/
	$(RULEHOST) test rules-tests

.PHONY: test
test: plugins test-components ## Run every test: unit, integration, YAML specs
	$(CARGO) test --release --workspace $(SERVE)
	$(RULEHOST) test rules-tests

.PHONY: lint
lint: ## clippy -D warnings (host and wasm) and rustfmt --check
	$(CARGO) fmt --all --check
	$(CARGO) clippy --release --workspace --all-targets $(SERVE) -- -D warnings
	$(CARGO) clippy --release -p rulehost -- -D warnings
	$(CARGO) clippy --profile plugin --target $(WASM_TARGET) $(addprefix -p ,$(subst _,-,$(RULE_CRATES) $(TEST_CRATES))) -- -D warnings

.PHONY: doc
doc: ## Build the docs with warnings as errors
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps --workspace $(SERVE)

.PHONY: demo-data
demo-data: ## Regenerate the committed demo sample (deterministic)
	python3 scripts/gen_databricks.py --events 2000 --seed 7 --hours 48 --roamers 3 --output $(DEMO_DATA)

.PHONY: native
native: ## Build rulehost-native, the plain-Rust baseline of the seed rules (bench/native)
	$(CARGO) build --release -p rulehost-native

.PHONY: typed
typed: ## Build rulehost-typed, the hand-written typed detector of the seed rules (bench/typed)
	$(CARGO) build --release -p rulehost-typed

# `make bench ROUNDS=3`: fewer (or more) interleaved rounds than the default 5.
BENCH_ROUNDS := $(if $(ROUNDS),--rounds $(ROUNDS))
BENCH_BINARIES := $(BENCH_ROUNDS) --rulehost $(RULEHOST) --native $(TARGET_DIR)/release/rulehost-native \
	--typed $(TARGET_DIR)/release/rulehost-typed

.PHONY: bench
bench: build native typed ## Time rulehost against native Rust, typed Rust, DuckDB and Panther on 1M generated events (bench-data/)
	python3 scripts/bench.py $(BENCH_BINARIES)

.PHONY: bench-python
bench-python: build ## Time only the Python rule rows of make bench: each seed rule as Rust, as Python in rulehost, in Panther's engine
	python3 scripts/bench.py --python-rules --rulehost $(RULEHOST) $(BENCH_ROUNDS)

.PHONY: instructions
instructions: build native ## Instructions per event under callgrind, rulehost and native (after make bench)
	scripts/instructions.sh $(RULEHOST) $(TARGET_DIR)/release/rulehost-native

.PHONY: bench-check
bench-check: build native typed ## Check that rulehost-native writes rulehost's alerts byte for byte, and rulehost-typed the same windows
	python3 scripts/bench.py --check $(BENCH_BINARIES)

.PHONY: panther-compare
panther-compare: build ## Dev: Panther's Python rules, rulehost vs panther-core (PyPI), same alerts? (../shared/panther-analysis)
	$(PYTHON) scripts/panther_compare.py --rulehost $(RULEHOST)

.PHONY: new-rule
new-rule: ## Scaffold a rule crate and its spec: make new-rule NAME=snake_case_name [RULE_ID=Vendor.LogType.Name]
	@test -n "$(NAME)" || { echo "usage: make new-rule NAME=snake_case_name [RULE_ID=Vendor.LogType.Name]"; exit 2; }
	python3 scripts/new_rule.py '$(NAME)' $(if $(RULE_ID),--rule-id '$(RULE_ID)')

FUZZ_SECONDS ?= 60
# Target, then the read-only seed folders it starts from (new finds go to fuzz/corpus/).
FUZZ_RUNS := parse_line:fuzz/seeds/parse_line pruned_parse:fuzz/seeds/pruned_parse spec_parse:rules-tests

.PHONY: fuzz
fuzz: ## Fuzz event ingestion, the pruned parse against a full one, and spec loading, FUZZ_SECONDS (60) per target; not in CI
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz
	@for run in $(FUZZ_RUNS); do \
		target=$${run%%:*}; seeds=$${run#*:}; \
		mkdir -p fuzz/corpus/$$target; \
		echo "fuzz: $$target for $(FUZZ_SECONDS) s"; \
		RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run --fuzz-dir fuzz $$target fuzz/corpus/$$target $$seeds \
			-- -max_total_time=$(FUZZ_SECONDS) -max_len=65536 || exit 1; \
	done

.PHONY: clean
clean: ## Remove build outputs
	$(CARGO) clean
	rm -rf build
