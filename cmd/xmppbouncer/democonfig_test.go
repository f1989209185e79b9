package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"xmppbouncer/config"
	"xmppbouncer/listener"
)

// TestDemoConfigIsPrivate: make demo writes its config with mode 0600 even
// under the usual umask 022, so the bouncer starts without the warning
// about a password file others can read.
func TestDemoConfigIsPrivate(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"certs", "bouncer"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	// The CA file the config names must exist and parse.
	if _, _, err := listener.LoadOrCreateCert("", "", filepath.Join(dir, "certs"), []string{"localhost"}); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "certs", "xmppbouncer-cert.pem"), filepath.Join(dir, "certs", "localhost.crt")); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("bash", "-c", `umask 022 && exec ../../scripts/demo-config.sh "$1" 5222 5223 5224`, "sh", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("demo-config.sh: %v\n%s", err, out)
	}
	path := filepath.Join(dir, "xmppbouncer.toml")
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("the demo's config has mode %04o, want 0600", st.Mode().Perm())
	}
	c, err := config.Load(path)
	if err != nil {
		t.Fatalf("the demo's config does not load: %v", err)
	}
	for _, w := range c.Warnings {
		t.Errorf("warning at start: %s", w)
	}
	// demo.sh writes its config with this script.
	demo, err := os.ReadFile("../../scripts/demo.sh")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(demo), "./scripts/demo-config.sh \"$dir\"") {
		t.Error("scripts/demo.sh does not write its config with scripts/demo-config.sh")
	}
}
