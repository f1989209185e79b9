package listener

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Names of the generated certificate in the data directory.
const (
	generatedCert = "xmppbouncer-cert.pem"
	generatedKey  = "xmppbouncer-key.pem"
)

// LoadOrCreateCert loads the certificate pair certFile/keyFile, or with an
// empty certFile the self-signed pair in dataDir, generating it on first use
// for hosts (DNS names or IP addresses). Clients pin a self-signed
// certificate (Conversations, Gajim), so it is made once and kept. The
// second result is the SHA-256 fingerprint of the leaf certificate, hex
// with colons, for the user to compare when a client asks.
func LoadOrCreateCert(certFile, keyFile, dataDir string, hosts []string) (tls.Certificate, string, error) {
	if certFile == "" {
		certFile = filepath.Join(dataDir, generatedCert)
		keyFile = filepath.Join(dataDir, generatedKey)
		_, errC := os.Stat(certFile)
		_, errK := os.Stat(keyFile)
		switch {
		case errors.Is(errC, os.ErrNotExist) && errors.Is(errK, os.ErrNotExist):
			if err := generateCert(certFile, keyFile, hosts); err != nil {
				return tls.Certificate{}, "", err
			}
		case errors.Is(errC, os.ErrNotExist) || errors.Is(errK, os.ErrNotExist):
			return tls.Certificate{}, "", fmt.Errorf("certificate: only one of %s and %s exists; remove it to generate a new pair", certFile, keyFile)
		}
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return tls.Certificate{}, "", fmt.Errorf("certificate %s: %w", certFile, err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return tls.Certificate{}, "", fmt.Errorf("certificate %s: %w", certFile, err)
	}
	cert.Leaf = leaf
	return cert, Fingerprint(leaf.Raw), nil
}

// Fingerprint is the SHA-256 of a DER certificate, as colon-separated hex.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	var b strings.Builder
	for i, c := range sum {
		if i > 0 {
			b.WriteByte(':')
		}
		fmt.Fprintf(&b, "%02X", c)
	}
	return b.String()
}

func generateCert(certFile, keyFile string, hosts []string) error {
	if err := os.MkdirAll(filepath.Dir(certFile), 0o700); err != nil {
		return fmt.Errorf("certificate: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("certificate: generating key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return fmt.Errorf("certificate: %w", err)
	}
	cn := "xmppbouncer"
	if len(hosts) > 0 {
		cn = hosts[0]
	}
	// Each certificate gets a subject of its own: a self-signed one is its
	// own issuer, and a system store (OpenSSL looks issuers up by subject)
	// that trusts an older one with the same subject would check a new
	// one against the wrong key.
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			CommonName:   cn,
			Organization: []string{"xmppbouncer (self-signed)"},
			SerialNumber: fmt.Sprintf("%032x", serial),
		},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().AddDate(20, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	// Each name once: the account's domain, localhost and the listening
	// addresses overlap (both listeners on 127.0.0.1, a domain of localhost).
	seen := map[string]bool{}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			if !seen[ip.String()] {
				seen[ip.String()] = true
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			}
		} else if k := strings.ToLower(h); h != "" && !seen[k] {
			seen[k] = true
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("certificate: %w", err)
	}
	// The key goes first, so a crash never leaves a certificate without it.
	if err := writeFileAtomic(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}
	return writeFileAtomic(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err != nil {
		return fmt.Errorf("certificate: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("certificate: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("certificate: writing %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("certificate: writing %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("certificate: writing %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("certificate: %w", err)
	}
	return nil
}
