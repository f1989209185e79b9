package listener

import (
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/text/secure/precis"
)

// hashIterations is the PBKDF2 count for new hashes. RFC 7677 §4 asks for at
// least 4096; Prosody and ejabberd default to more.
const hashIterations = 10000

// minIterations is the floor ParseCredentials accepts (RFC 7677 §4).
const minIterations = 4096

const saltLen = 16

// Credentials are the local clients' password in salted form: the SCRAM
// SaltedPassword (RFC 5802 §3) for SHA-1 and SHA-256 under one salt and
// iteration count. PLAIN is checked by deriving the same value, so the
// password itself is never kept.
type Credentials struct {
	iterations int
	salt       []byte
	sha1       []byte
	sha256     []byte
}

// HashPassword salts and hashes password for auth.password_hash. The
// result reads "scram$<iterations>$<salt>$<sha1 salted>$<sha256 salted>",
// base64 for the last three.
func HashPassword(password string) (string, error) {
	if password == "" {
		return "", errors.New("hash password: empty password")
	}
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	c, err := derive(password, salt, hashIterations)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	b64 := base64.StdEncoding.EncodeToString
	return "scram$" + strconv.Itoa(c.iterations) + "$" + b64(c.salt) + "$" + b64(c.sha1) + "$" + b64(c.sha256), nil
}

// ParseCredentials reads a hash made by HashPassword.
func ParseCredentials(s string) (*Credentials, error) {
	parts := strings.Split(strings.TrimSpace(s), "$")
	if len(parts) != 5 || parts[0] != "scram" {
		return nil, errors.New("password hash: want scram$<iterations>$<salt>$<sha1>$<sha256>")
	}
	iter, err := strconv.Atoi(parts[1])
	if err != nil || iter < minIterations {
		return nil, fmt.Errorf("password hash: iteration count %q is not a number of at least %d", parts[1], minIterations)
	}
	c := &Credentials{iterations: iter}
	fields := []struct {
		dst  *[]byte
		name string
		size int // 0: any non-empty length
	}{{&c.salt, "salt", 0}, {&c.sha1, "SHA-1 key", sha1.Size}, {&c.sha256, "SHA-256 key", sha256.Size}}
	for i, f := range fields {
		b, err := base64.StdEncoding.DecodeString(parts[2+i])
		if err != nil || len(b) == 0 || (f.size > 0 && len(b) != f.size) {
			return nil, fmt.Errorf("password hash: bad %s", f.name)
		}
		*f.dst = b
	}
	return c, nil
}

// PlainCredentials salts password (from auth.password) with a fresh random
// salt, so every start derives a different but equivalent set of keys.
func PlainCredentials(password string) *Credentials {
	salt := make([]byte, saltLen)
	// crypto/rand.Read never fails on supported platforms (Go 1.24+).
	_, _ = rand.Read(salt)
	c, err := derive(password, salt, hashIterations)
	if err != nil {
		// Only reachable with an absurd key length; keep the type total.
		panic(fmt.Sprintf("listener: deriving credentials: %v", err))
	}
	return c
}

func derive(password string, salt []byte, iter int) (*Credentials, error) {
	pw := []byte(normalizePassword(password))
	k1, err := pbkdf2.Key(sha1.New, string(pw), salt, iter, sha1.Size)
	if err != nil {
		return nil, err
	}
	k256, err := pbkdf2.Key(sha256.New, string(pw), salt, iter, sha256.Size)
	if err != nil {
		return nil, err
	}
	return &Credentials{iterations: iter, salt: salt, sha1: k1, sha256: k256}, nil
}

// normalizePassword applies the OpaqueString profile (RFC 8265 §4.2), the
// successor of the SASLprep step that SCRAM clients apply before hashing
// (RFC 5802 §2.2). A password the profile refuses is used as is.
func normalizePassword(pw string) string {
	if n, err := precis.OpaqueString.String(pw); err == nil {
		return n
	}
	return pw
}

// salted returns the SaltedPassword for a SCRAM mechanism name.
func (c *Credentials) salted(mechanism string) []byte {
	if strings.HasPrefix(mechanism, "SCRAM-SHA-1") {
		return c.sha1
	}
	return c.sha256
}

// checkPassword derives the SHA-256 key from a PLAIN password with the
// stored salt and compares in constant time.
func (c *Credentials) checkPassword(password []byte) bool {
	k, err := pbkdf2.Key(sha256.New, normalizePassword(string(password)), c.salt, c.iterations, sha256.Size)
	if err != nil {
		return false
	}
	return subtle.ConstantTimeCompare(k, c.sha256) == 1
}
