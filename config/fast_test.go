package config

import (
	"strings"
	"testing"
	"time"
)

// TestFastTokenLifetime: auth.fast_token_lifetime defaults to 30 days,
// takes a duration, and refuses one too short to be of use.
func TestFastTokenLifetime(t *testing.T) {
	c, err := Load(write(t, minimal))
	if err != nil {
		t.Fatal(err)
	}
	if c.Auth.FastTokenLifetime.Duration != 30*24*time.Hour {
		t.Fatalf("default %v", c.Auth.FastTokenLifetime.Duration)
	}
	c, err = Load(write(t, minimal+"fast_token_lifetime = \"168h\"\n"))
	if err != nil || c.Auth.FastTokenLifetime.Duration != 168*time.Hour {
		t.Fatalf("168h: %v, %v", c, err)
	}
	_, err = Load(write(t, minimal+"fast_token_lifetime = \"10s\"\n"))
	if err == nil || !strings.Contains(err.Error(), "auth.fast_token_lifetime") {
		t.Fatalf("10s: %v", err)
	}
}
