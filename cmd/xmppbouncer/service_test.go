package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"xmppbouncer/internal/testdeps"
)

const unitPath = "../../contrib/xmppbouncer.service"

// TestServiceUnitHardening checks the directives the unit promises, with or
// without systemd.
func TestServiceUnitHardening(t *testing.T) {
	b, err := os.ReadFile(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	unit := string(b)
	for _, want := range []string{
		"\nDynamicUser=yes\n", "\nStateDirectory=xmppbouncer\n", "\nProtectSystem=strict\n",
		"\nNoNewPrivileges=yes\n", "\nRestart=on-failure\n", "\nRestartPreventExitStatus=2\n",
	} {
		if !strings.Contains(unit, want) {
			t.Errorf("unit lacks %q", strings.TrimSpace(want))
		}
	}
	// No reload is implemented: the unit must not pretend otherwise.
	if strings.Contains(unit, "ExecReload=") {
		t.Error("unit has ExecReload but xmppbouncer does not reload on SIGHUP")
	}
}

// TestServiceUnitVerifies runs systemd-analyze verify on the unit, with
// ExecStart pointing at a freshly built binary (verify checks that it is
// executable).
func TestServiceUnitVerifies(t *testing.T) {
	analyze := testdeps.Command(t, "systemd-analyze", "systemd")
	goBin := testdeps.Go(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "xmppbouncer")
	build := exec.Command(goBin, "build", "-tags", "sqlite_fts5", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	b, err := os.ReadFile(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	unit := strings.ReplaceAll(string(b), "/usr/local/bin/xmppbouncer", bin)
	path := filepath.Join(dir, "xmppbouncer.service")
	if err := os.WriteFile(path, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}
