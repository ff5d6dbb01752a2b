# echochat: `make run` serves chat on 127.0.0.1:6667, `make test` checks everything.
# Both create the virtual environment first if it is missing or out of date.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
IMPL ?= asyncio
PORT ?= 6667

.PHONY: run test compare demo bench storm lint typecheck imports pytest experiments clean

$(BIN)/echochat: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "echochat needs Python >= 3.11; set PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --editable '.[dev]'
	@touch $@

run: $(BIN)/echochat
	@echo "Chat server ($(IMPL)) on 127.0.0.1:$(PORT); stop it with Ctrl-C. Connect with:"
	@echo "  irssi -c 127.0.0.1 -p $(PORT) -n yournick        then /join #echochat"
	@echo "  weechat, then: /server add echochat 127.0.0.1/$(PORT) -notls; /connect echochat"
	@echo "  nc -C 127.0.0.1 $(PORT)   then type: NICK you / USER you 0 * :You / JOIN #echochat"
	@echo "Implementations: make run IMPL=asyncio | trio | anyio-asyncio | anyio-trio"
	@echo "TLS beside plain TCP (IRC's port 6697), with a certificate for localhost:"
	@echo "  openssl req -x509 -nodes -days 30 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \\"
	@echo "    -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \\"
	@echo "    -keyout key.pem -out cert.pem"
	@echo "  $(BIN)/echochat serve --impl $(IMPL) --port $(PORT) --tls-port 6697 --tls-cert cert.pem --tls-key key.pem"
	@echo "  irssi, then: /connect -tls -tls_verify -tls_cafile $(CURDIR)/cert.pem localhost 6697"
	@echo "  openssl s_client -connect 127.0.0.1:6697 -quiet -crlf -CAfile cert.pem -verify_hostname localhost"
	$(BIN)/echochat serve --impl $(IMPL) --service chat --host 127.0.0.1 --port $(PORT)

test: lint typecheck imports pytest

lint: $(BIN)/echochat
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(BIN)/echochat
	$(BIN)/mypy

imports: $(BIN)/echochat
	$(BIN)/lint-imports

# System packages the tests need, listed in .ci/debian-packages (CI starts from a fresh
# Debian machine); installed with apt-get when missing, re-checked when the list changes.
DEBIAN_STAMP := $(VENV)/.debian-packages
$(DEBIAN_STAMP): .ci/debian-packages .ci/install-debian-packages
	.ci/install-debian-packages .ci/debian-packages
	@mkdir -p $(VENV) && touch $@

pytest: $(BIN)/echochat $(DEBIAN_STAMP)
	$(BIN)/pytest

# The docs site (Sphinx, MyST, furo): warnings are errors, references nitpicky.
# `make test` builds it too (tests/tools/test_docs.py), checks its links and opens it in Chromium.
.PHONY: docs
docs: $(BIN)/echochat
	$(BIN)/sphinx-build -W --keep-going -n -b html docs docs/_build/html

# The comparison: the shared contract suite per implementation, then a quick
# benchmark matrix (under 5 minutes on 2 cores); figures go to build/compare.
compare: $(BIN)/echochat
	$(BIN)/echochat bench compare

# Every implementation at once, a fast and a stalled reader on each: a live table of
# memory and SendQ for about 20 s, then a verdict per implementation.
demo: $(BIN)/echochat
	$(BIN)/echochat demo

# The full matrix; rewrites docs/figures/bench* and the table in docs/performance.md.
bench: $(BIN)/echochat
	$(BIN)/echochat bench matrix --docs

# The connection storm of docs/sidebyside/running-out.md; rewrites docs/figures/storm.*.
storm: $(BIN)/echochat
	$(BIN)/echochat bench storm --out docs/figures

# Regenerates docs/figures/*.json and *.png (under 10 minutes on 2 cores).
experiments: $(BIN)/echochat
	$(BIN)/echochat experiment all --out docs/figures

# Coverage-guided fuzzing of the framing and parsing layer with atheris (not part
# of `make test` or CI). FUZZ_SECONDS is the total, shared by FUZZ_TARGETS; the
# corpus grows in build/fuzz/corpus, crashing inputs land in build/fuzz/crashes.
FUZZ_SECONDS ?= 600
FUZZ_TARGETS ?= framing message
.PHONY: fuzz
fuzz: $(BIN)/echochat
	@$(BIN)/python -c 'import atheris' 2>/dev/null || $(BIN)/python -m pip install --quiet --editable '.[fuzz]'
	@set -e; share=$$(( $(FUZZ_SECONDS) / $(words $(FUZZ_TARGETS)) )); \
	for target in $(FUZZ_TARGETS); do \
		mkdir -p build/fuzz/corpus/$$target build/fuzz/crashes; \
		echo "fuzz/fuzz_$$target.py for $$share s"; \
		$(BIN)/python fuzz/fuzz_$$target.py -max_total_time=$$share -print_final_stats=1 \
			-artifact_prefix=build/fuzz/crashes/$$target- build/fuzz/corpus/$$target fuzz/corpus/$$target; \
	done

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis .import_linter_cache
