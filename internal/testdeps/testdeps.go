// Package testdeps is how tests ask for what `make deps`
// (scripts/install-test-deps.sh) installs. A missing dependency fails the
// test with the command that installs it; it never skips, so a run
// without it cannot pass by testing less.
package testdeps

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// Python is the interpreter the slixmpp tests run: Debian's, which
// python3-slixmpp installs into.
const Python = "/usr/bin/python3"

// Slixmpp fails t unless Python can import slixmpp; it returns Python.
func Slixmpp(t testing.TB) string {
	t.Helper()
	if _, err := exec.LookPath(Python); err != nil {
		t.Fatalf("%s is missing: run `make deps` as root (it installs the Debian package python3-slixmpp)", Python)
	}
	if out, err := exec.Command(Python, "-c", "import slixmpp").CombinedOutput(); err != nil {
		t.Fatalf("python3-slixmpp is not installed (%v: %s): run `make deps` as root", err, out)
	}
	return Python
}

// Command fails t unless name is on PATH; pkg is the Debian package that
// `make deps` installs it from. It returns the command's path.
func Command(t testing.TB, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is not installed: run `make deps` as root (it installs the Debian package %s)", name, pkg)
	}
	return p
}

// Go returns the go command of the toolchain running the tests, which is
// there even when it is not on PATH.
func Go(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	p := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := exec.LookPath(p); err != nil {
		t.Fatalf("no go command on PATH or in %s: cannot build the binary", runtime.GOROOT())
	}
	return p
}
