# Tern - one binary, a whole mail system.
# make          build ./tern (-Wall -Wextra -Werror)
# make test     deps, normal + ASan/UBSan builds, C unit tests, pytest integration tests
# make run      build and start the development instance
# make fuzz     build libFuzzer targets (clang)
# make bench-smtp  SMTP delivery benchmark against Postfix

CC      ?= cc
PKGS    := libevent libevent_openssl openssl libcares sqlite3
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
WARN    := -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter -Wformat=2 -Wno-format-truncation -Wvla
CFLAGS_COMMON := -std=c17 -D_GNU_SOURCE -Isrc $(WARN) $(PKG_CFLAGS) -pthread
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

.PHONY: all deps test unit integration e2e run fuzz clean lint bench-smtp asan
all: deps tern

deps:
	@./scripts/deps.sh

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

build/asan/unit/%: tests/unit/%.c tests/unit/test.h $(OBJ_A)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ASAN) -Itests/unit -o $@ $< $(OBJ_A) $(LIBS)

asan: build/asan/tern

test: deps tern build/asan/tern $(UNIT_A)
	./scripts/run-unit.sh $(UNIT_A)
	TERN_BIN=$(CURDIR)/build/asan/tern $(PYTEST) -q -p no:cacheprovider tests/integration $(PYTEST_ARGS)
	TERN_BIN=$(CURDIR)/build/asan/tern $(PYTEST) -q -p no:cacheprovider tests/e2e $(PYTEST_ARGS)

unit: deps $(UNIT_A)
	./scripts/run-unit.sh $(UNIT_A)

integration: deps build/asan/tern
	TERN_BIN=$(CURDIR)/build/asan/tern $(PYTEST) -q -p no:cacheprovider tests/integration $(PYTEST_ARGS)

e2e: deps build/asan/tern
	TERN_BIN=$(CURDIR)/build/asan/tern $(PYTEST) -q -p no:cacheprovider tests/e2e $(PYTEST_ARGS)

run: deps tern
	./tern serve

FUZZ_CFLAGS := -std=c17 -D_GNU_SOURCE -Isrc -g -O1 -fsanitize=fuzzer,address,undefined $(PKG_CFLAGS)
# Run a target without writing into the seed corpus: build/fuzz/NAME -max_total_time=60 NEWDIR tests/fuzz/corpus/NAME
fuzz: deps
	@mkdir -p build/fuzz
	for f in $(FUZZ_SRC); do \
		n=$$(basename $$f .c); \
		clang $(FUZZ_CFLAGS) -o build/fuzz/$$n $$f $(LIBSRC) $(LIBS) || exit 1; \
	done

bench-smtp: deps tern
	./bench/smtp.sh

bench-pop3: deps tern
	./bench/pop3.sh

bench-relay: deps tern
	./bench/relay.sh

lint:
	clang-format --dry-run $(SRC) $(UNIT_SRC)
	cppcheck --quiet --std=c11 -Isrc src

clean:
	rm -rf build tern

-include $(shell find build -name '*.d' 2>/dev/null)
