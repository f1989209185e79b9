package testserver

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

var (
	prosodyBin    = "/usr/bin/prosody"
	prosodyctlBin = "/usr/bin/prosodyctl"
)

// template is what every server of this test binary starts from: the
// certificate and a data directory with the test accounts registered. It
// is held in memory so no directory outlives the tests.
type template struct {
	cert, key []byte
	files     map[string][]byte // relative to the server dir
}

var (
	tplOnce sync.Once
	tpl     *template
	tplErr  error
)

func loadTemplate() (*template, error) {
	tplOnce.Do(func() { tpl, tplErr = buildTemplate() })
	return tpl, tplErr
}

func findProsody() error {
	for _, p := range []*string{&prosodyBin, &prosodyctlBin} {
		if _, err := os.Stat(*p); err == nil {
			continue
		}
		found, err := exec.LookPath(filepath.Base(*p))
		if err != nil {
			return fmt.Errorf("%s is not installed; these integration tests need a real Prosody 0.12. Run `make deps` (scripts/install-test-deps.sh installs it), or as root: apt-get install -y prosody && service prosody stop", filepath.Base(*p))
		}
		*p = found
	}
	return nil
}

func buildTemplate() (*template, error) {
	if err := findProsody(); err != nil {
		return nil, err
	}
	cert, key, err := newCert()
	if err != nil {
		return nil, err
	}
	t := &template{cert: cert, key: key, files: map[string][]byte{}}
	dir, err := os.MkdirTemp("", "xb-prosody-template-")
	if err != nil {
		return nil, fmt.Errorf("template dir: %w", err)
	}
	defer os.RemoveAll(dir)
	s := &Server{Domain: "localhost", MUC: "conference.localhost", Dir: dir,
		LogFile: filepath.Join(dir, "prosody.log"), Addr: "127.0.0.1:0", DirectTLSAddr: "127.0.0.1:0"}
	if err := t.install(dir); err != nil {
		return nil, err
	}
	cfg := s.path("prosody.cfg.lua")
	if err := os.WriteFile(cfg, []byte(s.config()), 0o600); err != nil {
		return nil, err
	}
	errs := make(chan error, 3)
	for _, u := range []string{Alice, Bob, Carol} {
		go func() { errs <- prosodyctl(cfg, "register", u, s.Domain, Password(u)) }()
	}
	for range 3 {
		if err := <-errs; err != nil {
			return nil, err
		}
	}
	data := filepath.Join(dir, "data")
	err = filepath.WalkDir(data, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		t.files[rel] = b
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read template data: %w", err)
	}
	if len(t.files) < 3 {
		return nil, fmt.Errorf("prosodyctl register left only %d files in %s", len(t.files), data)
	}
	return t, nil
}

// install writes the certificate, the CA file and the data files into dir.
func (t *template) install(dir string) error {
	files := map[string][]byte{
		"certs/localhost.crt": t.cert,
		"certs/localhost.key": t.key,
		"ca.pem":              t.cert,
	}
	for k, v := range t.files {
		files[k] = v
	}
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
		return err
	}
	for rel, b := range files {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return err
		}
		if err := os.WriteFile(p, b, 0o600); err != nil {
			return err
		}
	}
	return nil
}

func prosodyctl(cfg string, args ...string) error {
	cmd := exec.Command(prosodyctlBin, append([]string{"--config", cfg}, args...)...)
	cmd.Dir = filepath.Dir(cfg)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("prosodyctl %s: %w: %s", strings.Join(args[:min(len(args), 3)], " "), err, out)
	}
	return nil
}
