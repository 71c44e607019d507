# Tern - one binary, a whole mail system.
# make          build ./tern (-Wall -Wextra -Werror)
# make test     deps, normal + ASan/UBSan builds, C unit tests, fuzz targets (briefly),
#               pytest integration tests (in parallel with pytest-xdist, then the `serial` ones
#               alone; XDIST_WORKERS=3), reliability tests (SIGKILL under load, full disk,
#               lost index), e2e tests
# make reliability  the reliability tests alone
# make run      build and start the development instance
# make fuzz     build libFuzzer targets (clang); make fuzz-run fuzzes each for 5 minutes
# make valgrind integration tests with `tern serve` under valgrind memcheck (-O2 -g build; slow,
#               niced; fails on errors and definite/indirect leaks; see docs/architecture.md)
# make bench-smtp  SMTP delivery benchmark against Postfix
# make bench-imap  IMAP benchmark against Dovecot
# make bench-imap-big  IMAP on one 100,000-message mailbox against Dovecot
# make install  PREFIX=/usr/local DESTDIR= SBINDIR SYSCONFDIR=/etc LOCALSTATEDIR=/var/lib:
#               the binary, the systemd unit, a sample /etc/tern/tern.conf (never over an
#               existing one), /var/lib/tern (docs/operations.md); make uninstall
# make bench     every benchmark against its peer, one table (bench/all.sh; up to 20 minutes)
# make bench-tools  the C load generators of the benchmarks (build/bench/)

# Two stages, so that the first `make` on a machine without the -dev packages works: the
# pkg-config calls below are expanded when a makefile is read, which must happen after
# scripts/deps.sh installed the packages. So the outer make (TERN_INNER unset) only runs
# deps.sh and then one sub-make, with TERN_INNER=1 and the same goals, variables and -j,
# which reads this file afresh and does the real work.
ifndef TERN_INNER

GOALS := $(or $(MAKECMDGOALS),all)
.PHONY: $(GOALS) stage2

$(GOALS): stage2
	@:

# clean, lint and uninstall need no packages from deps.sh.
stage2:
ifneq ($(filter-out clean lint uninstall,$(GOALS)),)
	@./scripts/deps.sh
endif
	@$(MAKE) --no-print-directory TERN_INNER=1 $(GOALS)

else # TERN_INNER: the real build

CC      ?= cc
PKGS    := libevent libevent_openssl openssl libcares sqlite3 libpsl libcurl jansson
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
ifneq ($(filter-out clean lint deps uninstall,$(MAKECMDGOALS)),)
ifeq ($(PKG_LIBS),)
$(error pkg-config finds no $(PKGS): run ./scripts/deps.sh, or plain `make`, which runs it)
endif
endif
WARN    := -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter -Wformat=2 -Wno-format-truncation -Wvla
CFLAGS_COMMON := -std=c17 -D_GNU_SOURCE -pthread -Isrc $(WARN) $(PKG_CFLAGS)
CFLAGS_NORMAL := $(CFLAGS_COMMON) -O2 -g -D_FORTIFY_SOURCE=2 -fstack-protector-strong
CFLAGS_ASAN   := $(CFLAGS_COMMON) -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
LIBS    := $(PKG_LIBS) -lcrypt -lz -pthread

SRC      := $(shell find src -name '*.c' | sort)
LIBSRC   := $(filter-out src/cli/main.c,$(SRC))
UNIT_SRC := $(wildcard tests/unit/test_*.c)
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)

OBJ_N  := $(LIBSRC:%.c=build/normal/%.o)
OBJ_A  := $(LIBSRC:%.c=build/asan/%.o)
UNIT_A := $(UNIT_SRC:tests/unit/%.c=build/asan/unit/%)
PYTEST ?= /usr/bin/python3 -m pytest

.PHONY: all deps test unit integration reliability e2e valgrind run fuzz clean lint bench bench-tools bench-smtp bench-pop3 bench-relay bench-imap bench-imap-big asan
all: tern

# The outer make already ran scripts/deps.sh.
deps:
	@:

tern: build/normal/tern
	cp $< $@

build/normal/tern: $(OBJ_N) build/normal/src/cli/main.o
	$(CC) $(CFLAGS_NORMAL) -o $@ $^ $(LIBS)

build/asan/tern: $(OBJ_A) build/asan/src/cli/main.o
	$(CC) $(CFLAGS_ASAN) -o $@ $^ $(LIBS)

build/normal/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_NORMAL) -MMD -MP -c -o $@ $<

build/asan/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ASAN) -MMD -MP -c -o $@ $<

# the unit tests link against an archive, so that each takes only the objects it uses
build/asan/libtern.a: $(OBJ_A)
	ar rcs $@ $^

build/asan/unit/%: tests/unit/%.c tests/unit/test.h build/asan/libtern.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ASAN) -Itests/unit -o $@ $< build/asan/libtern.a $(LIBS)

asan: build/asan/tern

# make test on a 2-core machine (docs/architecture.md, "Tests"): the three builds (normal,
# ASan, libFuzzer) with -j$(TEST_JOBS) even when make itself was started without -j; the
# integration tests in two runs: every test not marked `serial` on $(XDIST_WORKERS)
# pytest-xdist workers (they mostly wait on servers; --dist loadfile: the tests of one file
# stay on one worker, so a module-scoped server starts once), with the fuzz targets replaying their
# regressions and seed corpus under nice beside them, then the `serial` ones (timing bounds,
# floods, slow clients: tests/integration/pytest.ini) one at a time on a machine of their own.
# Reliability and e2e tests run one at a time as before.
TEST_JOBS     ?= $(shell nproc 2>/dev/null || echo 2)
XDIST_WORKERS ?= 3
PYTEST_ASAN   := TERN_BIN=$(CURDIR)/build/asan/tern $(PYTEST) -q -p no:cacheprovider
# exit status 5: no test selected (PYTEST_ARGS narrowed the run to tests of the other kind)
INTEGRATION_SERIAL := $(PYTEST_ASAN) -m serial tests/integration $(PYTEST_ARGS) || [ $$? -eq 5 ]
INTEGRATION_PARALLEL := $(PYTEST_ASAN) -n $(XDIST_WORKERS) --dist loadfile -m "not serial" tests/integration $(PYTEST_ARGS) || [ $$? -eq 5 ]

test:
	$(MAKE) --no-print-directory -j$(TEST_JOBS) tern build/asan/tern $(UNIT_A) $(FUZZ_BIN)
	./scripts/run-unit.sh $(UNIT_A)
	@mkdir -p build/fuzz; ./tests/fuzz/run.sh -t $(FUZZ_SECONDS) $(FUZZ_TARGETS) >build/fuzz/test.log 2>&1 & fpid=$$!; \
	echo "integration tests on $(XDIST_WORKERS) xdist workers; fuzz-test beside them (build/fuzz/test.log)"; \
	$(INTEGRATION_PARALLEL); prc=$$?; \
	wait $$fpid; frc=$$?; echo "--- fuzz-test (ran beside the parallel tests):"; cat build/fuzz/test.log; \
	[ $$prc -eq 0 ] && [ $$frc -eq 0 ]
	$(INTEGRATION_SERIAL)
	$(PYTEST_ASAN) tests/reliability $(PYTEST_ARGS)
	$(PYTEST_ASAN) tests/e2e $(PYTEST_ARGS)

unit: $(UNIT_A)
	./scripts/run-unit.sh $(UNIT_A)

integration: build/asan/tern
	$(INTEGRATION_PARALLEL)
	$(INTEGRATION_SERIAL)

reliability: build/asan/tern
	TERN_BIN=$(CURDIR)/build/asan/tern $(PYTEST) -q -p no:cacheprovider tests/reliability $(PYTEST_ARGS)

e2e: build/asan/tern
	TERN_BIN=$(CURDIR)/build/asan/tern $(PYTEST) -q -p no:cacheprovider tests/e2e $(PYTEST_ARGS)

# memcheck over the integration tests: every process of every `tern serve` writes a log next to
# the instance's tern.log; a test fails on any memcheck error or definite/indirect leak
# (third-party still-reachable memory is suppressed in tests/valgrind.supp). Tests that cannot
# run 20-50x slower are marked no_valgrind and deselected. Waits are stretched by
# TERN_TIMEOUT_SCALE (default 10 under valgrind), the per-test timeout by VG_TEST_TIMEOUT.
# VG_TESTS narrows the run, e.g. `make valgrind VG_TESTS=tests/integration/test_pop3.py`.
VG_TEST_TIMEOUT ?= 1800
VG_TESTS ?= tests/integration
valgrind: build/normal/tern
	TERN_BIN=$(CURDIR)/build/normal/tern TERN_VALGRIND=1 nice -n 19 $(PYTEST) -q -p no:cacheprovider \
		-o timeout=$(VG_TEST_TIMEOUT) -m "not no_valgrind" $(VG_TESTS) $(PYTEST_ARGS)

run: tern
	./tern serve

# Fuzzing (tests/fuzz/run.sh; docs/architecture.md, "Fuzzing"): every library source is
# compiled once for libFuzzer (-fsanitize=fuzzer-no-link: coverage, ASan, UBSan) into
# build/fuzz/libtern.a, and each target tests/fuzz/fuzz_NAME.c is linked against it (only
# the objects it needs), so a change rebuilds what it touches. UBSan findings abort
# (-fno-sanitize-recover) so that libFuzzer sees them as crashes.
FUZZ_CC     ?= clang
FUZZ_SAN    := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_CFLAGS := -std=c17 -D_GNU_SOURCE -pthread -Isrc -g -O1 -fsanitize=fuzzer $(FUZZ_SAN) $(PKG_CFLAGS)
FUZZ_OBJ_CFLAGS := $(filter-out -fsanitize=fuzzer,$(FUZZ_CFLAGS)) -fsanitize=fuzzer-no-link
FUZZ_OBJ    := $(LIBSRC:%.c=build/fuzz/obj/%.o)
FUZZ_BIN    := $(FUZZ_SRC:tests/fuzz/%.c=build/fuzz/%)
FUZZ_SECONDS ?= 3
FUZZ_LONG_SECONDS ?= 300

build/fuzz/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_OBJ_CFLAGS) -MMD -MP -c -o $@ $<

build/fuzz/libtern.a: $(FUZZ_OBJ)
	rm -f $@
	ar rcs $@ $^

build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c build/fuzz/libtern.a
	$(FUZZ_CC) $(FUZZ_CFLAGS) -MMD -MP -o $@ $< build/fuzz/libtern.a $(LIBS)

# make fuzz: build the targets. make fuzz-test (part of make test): replay
# tests/fuzz/regressions/, then FUZZ_SECONDS (3) of fuzzing per target from the seed corpus
# into a temporary directory; any crash fails. make fuzz-run: FUZZ_LONG_SECONDS (300) per
# target, new inputs kept in build/fuzz/corpus/NAME; FUZZ_TARGETS="base64 sasl" picks some.
.PHONY: fuzz-test fuzz-run
fuzz: $(FUZZ_BIN)

fuzz-test: $(FUZZ_BIN)
	./tests/fuzz/run.sh -t $(FUZZ_SECONDS) $(FUZZ_TARGETS)

fuzz-run: $(FUZZ_BIN)
	./tests/fuzz/run.sh -t $(FUZZ_LONG_SECONDS) -k $(FUZZ_TARGETS)

# The load generators (bench/*.c): -O2, OpenSSL where TLS is needed; not part of `make`.
BENCH_TOOLS  := build/bench/imap_load build/bench/pop3_load build/bench/smtp_load
BENCH_CFLAGS := -std=gnu17 -O2 -pthread -Wall -Wextra -Werror -Wshadow -Wvla

build/bench/%: bench/%.c
	@mkdir -p $(@D)
	$(CC) $(BENCH_CFLAGS) -o $@ $< -lssl -lcrypto

bench-tools: $(BENCH_TOOLS)

bench: tern bench-tools
	./bench/all.sh

bench-smtp: tern bench-tools
	./bench/smtp.sh

bench-pop3: tern bench-tools
	./bench/pop3.sh

bench-relay: tern bench-tools
	./bench/relay.sh

bench-imap: tern bench-tools
	./bench/imap.sh

bench-imap-big: tern bench-tools
	./bench/imap_big.sh

# Installing (docs/operations.md). Paths in the unit and the sample config are the run-time
# ones (without DESTDIR). The unit goes where systemd looks for it: /lib/systemd/system for
# PREFIX=/usr (Debian's place for packaged units), else PREFIX/lib/systemd/system.
PREFIX        ?= /usr/local
SBINDIR       ?= $(PREFIX)/sbin
SYSCONFDIR    ?= /etc
LOCALSTATEDIR ?= /var/lib
DOCDIR        ?= $(PREFIX)/share/doc/tern
MANDIR        ?= $(PREFIX)/share/man
ifeq ($(PREFIX),/usr)
UNITDIR       ?= /lib/systemd/system
else
UNITDIR       ?= $(PREFIX)/lib/systemd/system
endif
DIST_SUBST := sed -e 's|@SBINDIR@|$(SBINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' \
	-e 's|@LOCALSTATEDIR@|$(LOCALSTATEDIR)|g' -e 's|@DOCDIR@|$(DOCDIR)|g'
ETC := $(DESTDIR)$(SYSCONFDIR)/tern

.PHONY: install uninstall
# the paths come from this make's variables: filled in afresh at every install
install: tern
	@mkdir -p build/dist
	$(DIST_SUBST) dist/tern.service.in > build/dist/tern.service
	$(DIST_SUBST) dist/tern.conf.in > build/dist/tern.conf
	$(DIST_SUBST) dist/tern.8.in > build/dist/tern.8
	install -d -m 0755 $(DESTDIR)$(SBINDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(DOCDIR) $(ETC) \
		$(DESTDIR)$(MANDIR)/man8
	install -m 0755 tern $(DESTDIR)$(SBINDIR)/tern
	install -m 0644 build/dist/tern.8 $(DESTDIR)$(MANDIR)/man8/tern.8
	install -m 0644 build/dist/tern.service $(DESTDIR)$(UNITDIR)/tern.service
	install -m 0644 docs/operations.md docs/configuration.md docs/security.md $(DESTDIR)$(DOCDIR)/
	install -d -m 0700 $(ETC)/tls $(DESTDIR)$(LOCALSTATEDIR)/tern
	install -d -m 0755 $(ETC)/acme-challenge
	@if [ -e $(ETC)/tern.conf ]; then \
		install -m 0600 build/dist/tern.conf $(ETC)/tern.conf.sample; \
		echo "install: kept $(ETC)/tern.conf; the new sample is tern.conf.sample"; \
	else \
		install -m 0600 build/dist/tern.conf $(ETC)/tern.conf; \
		echo "install: edit $(SYSCONFDIR)/tern/tern.conf (hostname, domains, user)"; \
	fi
	@echo "install: then: systemctl daemon-reload && systemctl enable --now tern"

# uninstall leaves the configuration, the keys and the mail (SYSCONFDIR/tern, LOCALSTATEDIR/tern)
uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/tern $(DESTDIR)$(UNITDIR)/tern.service $(ETC)/tern.conf.sample \
		$(DESTDIR)$(MANDIR)/man8/tern.8
	rm -f $(DESTDIR)$(DOCDIR)/operations.md $(DESTDIR)$(DOCDIR)/configuration.md \
		$(DESTDIR)$(DOCDIR)/security.md
	rmdir $(DESTDIR)$(DOCDIR) 2>/dev/null || true
	@echo "uninstall: left $(SYSCONFDIR)/tern and $(LOCALSTATEDIR)/tern (configuration, keys, mail)"

lint:
	clang-format --dry-run $(SRC) $(UNIT_SRC)
	cppcheck --quiet --std=c11 -Isrc src

clean:
	rm -rf build tern

-include $(shell find build -name '*.d' 2>/dev/null)

endif # TERN_INNER
