# xmppbouncer build and test entry points.
GO ?= go
TAGS := sqlite_fts5

.PHONY: build test deps vet fuzz demo bench

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
