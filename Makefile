# xmppbouncer build and test entry points.
GO ?= go
TAGS := sqlite_fts5

.PHONY: build test deps vet fuzz demo bench load web

build:
	$(GO) build -tags $(TAGS) -o xmppbouncer ./cmd/xmppbouncer

deps:
	./scripts/install-test-deps.sh

vet:
	$(GO) vet -tags $(TAGS) ./...

test: deps vet
	$(GO) test -race -count=1 -tags $(TAGS) -timeout 15m ./...

fuzz:
	$(GO) test -run XXX -fuzz FuzzReadStanza -fuzztime 60s ./wire/

demo:
	./scripts/demo.sh

bench:
	$(GO) test -run XXX -bench . -benchmem -tags $(TAGS) ./...

# End-to-end load: a throwaway Prosody, the bouncer in-process, K clients
# through it and K directly; LOAD_FLAGS adds or overrides flags, e.g.
# make load LOAD_FLAGS='-rate 0 -json'.
LOAD_FLAGS ?=
load:
	@command -v prosody >/dev/null 2>&1 || { echo "make load: prosody is not installed; run \`make deps\` (as root) first" >&2; exit 1; }
	$(GO) run -tags $(TAGS) ./cmd/xbload -clients 10 -rate 200 -duration 20s $(LOAD_FLAGS)

# The web client served with [web] root: Converse.js from npm into web/root.
web:
	./scripts/make-web.sh
