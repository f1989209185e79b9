package admin

import (
	"go/parser"
	"go/token"
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestReachesCoreOnlyThroughInterface: the commands never import the core
// or the packages whose types hold its state (sessions, connections), so
// all they know of it is what Core offers.
func TestReachesCoreOnlyThroughInterface(t *testing.T) {
	forbidden := []string{"xmppbouncer/bouncer", "xmppbouncer/sessions", "xmppbouncer/listener", "xmppbouncer/wire"}
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), e.Name(), nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		n++
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			for _, bad := range forbidden {
				if path == bad {
					t.Errorf("%s imports %s: reach the core through Core instead", e.Name(), path)
				}
			}
		}
	}
	if n == 0 {
		t.Fatal("no source files read")
	}
}
