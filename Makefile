# Entry points: `make demo` and `make test` do all set-up on a fresh Debian machine.
SHELL       := /bin/bash
VENV        := .venv
PY          := $(VENV)/bin/python
BUILD       := build
CC          ?= gcc
APT_PKGS    := libunwind-dev libzstd-dev systemtap-sdt-dev graphviz libjemalloc-dev libjemalloc2 binutils chromium golang-go \
               libgoogle-perftools-dev google-perftools \
               sqlite3 ripgrep rustc libc6-dbg tmux \
               redis-server redis-tools openjdk-17-jdk-headless g++ nginx-light cmake postgresql
BENCH_PKGS  := heaptrack valgrind
CFLAGS_LIB  := -std=c11 -O2 -g -fPIC -fvisibility=hidden -fno-omit-frame-pointer \
               -Wall -Wextra -Werror -D_GNU_SOURCE -pthread
# Bound at load (-z now): no lazy binding on the sample path, which would enter the
# loader and push a large register save onto what may be a small signal stack.
LDFLAGS_LIB := -Wl,-z,now
LDLIBS_LIB  := -lunwind -lzstd -ldl -lm -pthread
ARCH        := $(firstword $(subst -, ,$(shell $(CC) -dumpmachine)))
# The sampler's layers, lowest first (ARCHITECTURE.md, "The sampler's layers"); the
# headers of sampler/ itself are its interfaces with the outside and the architecture's.
SAMPLER_LAYERS := base tables unwind writers sample control hooks
SAMPLER_C   := $(foreach layer,$(SAMPLER_LAYERS),$(wildcard sampler/$(layer)/*.c))
SAMPLER_SRC := $(SAMPLER_C) sampler/arch/$(ARCH).S
SAMPLER_HDR := $(wildcard sampler/*.h sampler/arch/*.h) \
               $(foreach layer,$(SAMPLER_LAYERS),$(wildcard sampler/$(layer)/*.h))
FIXTURE_CFLAGS := -O1 -g -fno-omit-frame-pointer -fno-inline -pthread
# The C unit tests: each built with the one module it tests (and sysutil.c) under
# AddressSanitizer and UBSan, which stop the test at the first fault.
UNIT_DIR    := tests/sampler/unit
UNIT_TESTS  := $(patsubst $(UNIT_DIR)/%.c,$(BUILD)/unit/%,$(wildcard $(UNIT_DIR)/test_*.c))
UNIT_CFLAGS := -std=c11 -O1 -g -fno-omit-frame-pointer -Wall -Wextra -Werror -D_GNU_SOURCE \
               -pthread -fsanitize=address,undefined -fno-sanitize-recover=all -Isampler

.PHONY: all setup deps bench-deps venv build arm64 c-unit test check demo gpu-kit bench soak lint clean

all: build

# --- set-up -----------------------------------------------------------------
setup: deps venv

# $(call install_missing,PACKAGES): apt-get install those of PACKAGES not installed yet.
define install_missing
	@missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi
endef

deps:
	$(call install_missing,$(APT_PKGS))

bench-deps: $(BUILD)/bench-venv/.installed $(BUILD)/bench-torch-venv/.installed
	$(call install_missing,$(BENCH_PKGS))

# Debian's python3 with memray, the Python peer in `make bench`.
$(BUILD)/bench-venv/.installed:
	/usr/bin/python3 -m venv $(BUILD)/bench-venv
	$(BUILD)/bench-venv/bin/pip install -q memray==1.20.0
	touch $@

# One CPython 3.11 with both PyTorch (CPU) and memray, for the PyTorch rows of `make
# bench`: pyenv's 3.11.7 where it is installed, Debian's python3 (3.11 on bookworm)
# otherwise. Where torch cannot be installed the venv is left without it and the rows
# are skipped, as the torch test is.
BENCH_TORCH_BASE := $(firstword $(wildcard $(HOME)/.pyenv/versions/3.11.7/bin/python) /usr/bin/python3)

$(BUILD)/bench-torch-venv/.installed:
	$(BENCH_TORCH_BASE) -m venv $(BUILD)/bench-torch-venv
	$(BUILD)/bench-torch-venv/bin/pip install -q memray==1.20.0
	$(BUILD)/bench-torch-venv/bin/pip install -q torch==2.13.0 \
	    || echo "PyTorch not installed: the PyTorch rows of make bench will be skipped"
	touch $@

venv: $(BUILD)/python-links

# Strict editable install (pyproject.toml says why): the package is a tree of links to
# the checkout's modules, made anew when a package folder changes (a module added or
# removed changes its folder's time) after the venv's own install made it.
STRICT      := --config-settings editable_mode=strict
PY_FOLDERS  := bindings/ $(wildcard bindings/*/) parser/ $(wildcard parser/*/) cmd/

$(VENV)/.installed: pyproject.toml setup.py
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]' $(STRICT)
	touch $@

# The package's byte-code, as pip writes an installed package's: without it, where
# PYTHONDONTWRITEBYTECODE is set, each command compiles every module it imports.
COMPILE_PY   = $(PY) -m compileall -q $(BUILD)/__editable__*/mem_profiler

$(BUILD)/python-links: $(VENV)/.installed $(PY_FOLDERS)
	@if [ -n "$$(find $(PY_FOLDERS) -maxdepth 0 -newer $(VENV)/.installed)" ]; then \
	  echo "$(PY) -m pip install -q --no-deps -e . $(STRICT)"; \
	  $(PY) -m pip install -q --no-deps -e . $(STRICT); fi
	$(COMPILE_PY)
	@mkdir -p $(BUILD) && touch $@

# PyTorch on the CPU for tests/sampler/test_python_torch.py, which is skipped where it
# cannot be installed; a test dependency only, never mem_profiler's.
$(VENV)/.torch: $(BUILD)/python-links
	$(PY) -m pip install -q torch==2.13.0 || echo "PyTorch not installed: its test will be skipped"
	touch $@

# Grafana's Pyroscope SDK for Node.js, whose heap profiles (pprof) the parser's tests read.
# After the steps that may run apt-get (`make test` runs them side by side).
$(BUILD)/pyroscope-node/.installed: | deps arm64
	@command -v npm >/dev/null || { SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq nodejs npm; }
	npm install -s --prefix $(BUILD)/pyroscope-node --no-audit --no-fund \
	  @pyroscope/nodejs@0.6.4 && touch $@ || echo "Pyroscope's SDK not installed: its test will fail"

# --- C build ----------------------------------------------------------------
build: deps $(BUILD)/libmemprof.so bindings/libmemprof.so $(BUILD)/examples/leaky

# The host's library, with these flags added.
link_sampler = $(CC) $(CFLAGS_LIB) $(1) -Isampler -DMEMPROF_LIBUNWIND -shared $(LDFLAGS_LIB) \
               -o $@ $(SAMPLER_SRC) $(LDLIBS_LIB)

$(BUILD)/libmemprof.so: $(SAMPLER_SRC) $(SAMPLER_HDR)
	@mkdir -p $(@D)
	$(call link_sampler,)

# The library as valgrind reads it (bench/sample_instructions.py): its window page on
# 4 KiB (sample/window_page.h).
$(BUILD)/callgrind/libmemprof.so: $(SAMPLER_SRC) $(SAMPLER_HDR)
	@mkdir -p $(@D)
	$(call link_sampler,-DMEMPROF_WINDOW_PAGE=4096)

bindings/libmemprof.so: $(BUILD)/libmemprof.so
	cp $< $@

# --- aarch64 ----------------------------------------------------------------
# The sampler cross-built for aarch64 (README, "Architectures"): Debian's cross
# compiler, and zstd from Debian's arm64 packages unpacked into a sysroot that
# qemu-aarch64-static -L also runs the arm64 tests from; without libunwind (its
# walks are the hybrid unwinder's there).  Where the cross tools do not install,
# nothing is built and the arm64 tests say so.
ARM64_CC      := aarch64-linux-gnu-gcc
ARM64_SYSROOT := $(BUILD)/arm64-sysroot
ARM64_APT     := gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static
ARM64_PKGS    := libc6 libzstd1 libzstd-dev sqlite3 python3.11-minimal libpython3.11-stdlib

arm64: | deps
	-$(call install_missing,$(ARM64_APT))
	@if command -v $(ARM64_CC) >/dev/null && command -v qemu-aarch64-static >/dev/null; then \
	  grep -qsx "$(ARM64_PKGS)" $(ARM64_SYSROOT)/.installed || rm -f $(ARM64_SYSROOT)/.installed; \
	  $(MAKE) --no-print-directory $(BUILD)/aarch64/libmemprof.so || \
	    echo "the aarch64 sampler did not build: the arm64 tests are skipped"; \
	else echo "no aarch64 cross compiler or qemu-aarch64-static: the arm64 tests are skipped"; fi

$(ARM64_SYSROOT)/.installed: tools/arm64_sysroot.sh
	tools/arm64_sysroot.sh $(ARM64_SYSROOT) $(ARM64_PKGS) || echo "no arm64 sysroot"

$(BUILD)/aarch64/libmemprof.so: $(SAMPLER_C) sampler/arch/aarch64.S $(SAMPLER_HDR) \
                                $(ARM64_SYSROOT)/.installed
	@mkdir -p $(@D)
	$(ARM64_CC) $(CFLAGS_LIB) -Isampler -idirafter $(ARM64_SYSROOT)/usr/include -shared $(LDFLAGS_LIB) \
	  -o $@ $(filter %.c %.S,$^) $(ARM64_SYSROOT)/usr/lib/aarch64-linux-gnu/libzstd.so.1 -ldl -lm -pthread

$(BUILD)/examples/leaky: examples/leaky.c
	@mkdir -p $(BUILD)/examples
	$(CC) $(FIXTURE_CFLAGS) -o $@ $<

# The module a test is named after, in whichever layer holds it.
unit_module  = $(filter %/$(1).c,$(SAMPLER_C))
.SECONDEXPANSION:
$(BUILD)/unit/test_%: $(UNIT_DIR)/test_%.c $$(call unit_module,$$*) sampler/base/sysutil.c \
                      $(SAMPLER_HDR) $(UNIT_DIR)/unit.h
	@mkdir -p $(@D)
	$(CC) $(UNIT_CFLAGS) -o $@ $(filter %.c,$^) -lm
$(BUILD)/unit/test_frame_tree: sampler/tables/hash_index.c   # the tree's indexes
$(BUILD)/unit/test_eh_frame: sampler/unwind/object_file.c   # the tables read from a file
$(BUILD)/unit/test_thread_block: sampler/tables/lifetimes.c   # the frees kept in a block

# --- jobs -------------------------------------------------------------------
# The C unit tests alone; `make test` runs them too (tests/sampler/test_c_units.py).
c-unit: $(UNIT_TESTS)
	@for t in $^; do echo "== $$t"; $$t || exit 1; done

# The tests run in parallel (pytest-xdist), more workers than cores: most of a test's
# time is spent waiting on the programs it profiles. Each worker takes the next test
# when it is free (worksteal), so the slow ones do not queue behind one worker. The
# tests marked `alone` see every process on the machine: they run after, by themselves.
TEST_JOBS   ?= $(shell echo $$(( $$(nproc) * 2 )))
PYTEST_PAR  := $(VENV)/bin/pytest -q -n $(TEST_JOBS) --dist worksteal

# The set-up steps run side by side, those that may run apt-get one after another (their
# `| deps`). PyTorch's install first: the longest step, the others share the other core.
TEST_SETUP  := $(VENV)/.torch setup build arm64 $(BUILD)/pyroscope-node/.installed \
               $(BUILD)/test-bytecode

# pytest's rewrite of the test modules' assertions, written once for every pytest process
# to read: where PYTHONDONTWRITEBYTECODE is set, each would redo it (4.5 CPU-s each). A
# module that does not collect is left for the run to report.
$(BUILD)/test-bytecode: $(BUILD)/python-links $(wildcard tests/*.py tests/*/*.py)
	-PYTHONDONTWRITEBYTECODE= $(VENV)/bin/pytest -q --collect-only tests > /dev/null
	@touch $@

test:
	@$(MAKE) --no-print-directory --output-sync=target -j$$(nproc) $(TEST_SETUP)
	$(PYTEST_PAR) -m "not alone" tests
	$(VENV)/bin/pytest -q -m alone tests

# The edit loop's tests (docs/development.md): the unit tests of each part, the C units
# among them, and the readers and reports on files; `make test` runs them too.
CHECK_TESTS := tests/test_layout.py tests/test_file_access.py tests/sampler/test_c_units.py \
               tests/sampler/test_c_layout.py \
               tests/parser/test_parser_reading.py tests/parser/test_bad_input.py \
               tests/parser/test_expected_outputs.py tests/parser/test_log_reader.py \
               tests/parser/test_report_jeprof.py tests/parser/test_atomic_writes.py \
               tests/parser/test_output_paths.py tests/parser/test_elf_headers.py \
               tests/parser/test_gate_budgets.py tests/cmd/test_cli_imports.py \
               tests/cmd/test_unknown_options.py tests/push/test_push_parts.py

check: setup build
	$(PYTEST_PAR) $(CHECK_TESTS)

demo: setup build
	$(VENV)/bin/mem_profiler run -c 1024 -o $(BUILD)/demo_ -- $(BUILD)/examples/leaky 200
	@f=$$(ls -t $(BUILD)/demo_*.heap | head -1); \
	echo; echo "== mem_parser -p $(BUILD)/examples/leaky -f $$f -t"; \
	$(VENV)/bin/mem_parser -p $(BUILD)/examples/leaky -f $$f -t && \
	$(VENV)/bin/mem_parser -p $(BUILD)/examples/leaky -f $$f -s -o $(BUILD)/demo.svg \
	    --flame $(BUILD)/demo_flame.html && \
	echo && echo "call graph: $(BUILD)/demo.svg   flame graph: $(BUILD)/demo_flame.html"

# What tests/gpu/on_device.sh needs on a lent GPU machine (docs/development.md).
gpu-kit: setup build
	tests/gpu/kit.sh

bench: setup bench-deps build $(BUILD)/callgrind/libmemprof.so
	$(COMPILE_PY)
	$(PY) bench/run_bench.py
	$(PY) bench/parser_speed.py
	$(PY) bench/sample_instructions.py

# Ten minutes of load with a dump every 2 s (bench/soak.py); tests/sampler/test_soak.py
# runs ten seconds of it.
soak: setup build
	$(PY) bench/soak.py

# ruff on the Python tree (tests/fixtures excluded, pyproject.toml says why), then mypy on
# the package (pyproject.toml's [tool.mypy]), which it reads by import name through the
# editable install's links: its file names are put back as the checkout's, as
# pyproject.toml's package-dir maps them (mem_profiler/parser/ is parser/, ...).
# Then mypy on tests/ and bench/, by their paths, with the same settings: their own
# modules found where they are when they run (tests/ for `support.*` and `standins.*`,
# bench/ for `peak_rss`), each file's module named from its folder (explicit package
# bases: tests/conftest.py and tests/gpu/conftest.py are two); not the fixtures. The
# package is the installed one, as above.
PY_TREE     := bindings parser cmd tests bench
LINKS_RE    := ^build/__editable__[^/]*/mem_profiler/
CHECKOUT_PATHS := sed -E 's,$(LINKS_RE)(parser|cmd)/,\1/,; s,$(LINKS_RE),bindings/,'
MYPY_TESTS  := MYPYPATH=tests:bench $(VENV)/bin/mypy --explicit-package-bases \
               --exclude '^tests/fixtures/' tests bench

# Commit subjects of at most 72 characters (git's own advice, and what `git log
# --oneline` shows whole), from the commit where the rule began; where the checkout has
# no such history (an archive, a shallow clone) there is nothing to check.
SUBJECTS_FROM := 178652b

lint: venv
	@if git cat-file -e $(SUBJECTS_FROM) 2>/dev/null; then \
	  long=$$(git log --format=%s $(SUBJECTS_FROM)..HEAD | awk 'length > 72'); \
	  if [ -n "$$long" ]; then echo "commit subjects over 72 characters:"; echo "$$long"; exit 1; fi; \
	fi
	$(VENV)/bin/ruff format --check $(PY_TREE)
	$(VENV)/bin/ruff check $(PY_TREE)
	set -o pipefail; $(VENV)/bin/mypy | $(CHECKOUT_PATHS)
	set -o pipefail; $(MYPY_TESTS) | $(CHECKOUT_PATHS)

clean:
	rm -rf $(BUILD) bindings/libmemprof.so
