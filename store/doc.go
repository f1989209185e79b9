// Package store holds the value types and errors the bouncer core speaks
// to its durable storage: archived room messages and MAM queries, the
// offline store, catch-up cursors, the chat queue, push registrations,
// FAST tokens and the persisted XEP-0198 sessions.
//
// The core (package bouncer) declares the Store interface in these types;
// a storage engine (package sqlite, the embedded default) imports this
// package and returns them. A second engine implements the same interface
// without importing sqlite, and this package imports neither, so tests of
// either side can use both without an import cycle.
package store
