package sqlite

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestOpenRefusesDamagedFile: Open runs PRAGMA quick_check and refuses a
// file with damaged pages in the middle; Check says the same without
// opening for writing.
func TestOpenRefusesDamagedFile(t *testing.T) {
	ctx := context.Background()
	db, path := openTest(t)
	for i := range 2000 {
		mustAppend(t, db, msg("r@muc.example", fmt.Sprintf("s%d", i), "bob", strings.Repeat("b", 200), i))
	}
	db.Close()
	if err := Check(ctx, path); err != nil {
		t.Fatalf("Check on a sound file: %v", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := f.Stat()
	mid := st.Size() / 4096 / 2 * 4096
	if _, err := f.WriteAt(bytes.Repeat([]byte{0xEE}, 3*4096), mid); err != nil {
		t.Fatal(err)
	}
	f.Close()

	for name, err := range map[string]error{"Check": Check(ctx, path), "Open": openErr(ctx, path)} {
		var ce *CorruptError
		if !errors.Is(err, ErrCorrupt) || !errors.As(err, &ce) || len(ce.Problems) == 0 {
			t.Fatalf("%s on a damaged file: %v, want a CorruptError", name, err)
		}
		if !strings.Contains(ce.Problems[0], "page") {
			t.Errorf("%s: problems %q do not name a page", name, ce.Problems)
		}
	}
}

func openErr(ctx context.Context, path string) error {
	db, err := Open(ctx, path)
	if err == nil {
		db.Close()
	}
	return err
}

// TestOpenReadOnlyDirectory: a database in a directory on a read-only
// file system gets an error that says so, not SQLite's "no such file".
func TestOpenReadOnlyDirectory(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=4m"); err != nil {
		t.Skipf("cannot mount a tmpfs (needs root or CAP_SYS_ADMIN), so no read-only file system to test on: %v", err)
	}
	defer syscall.Unmount(dir, syscall.MNT_DETACH)
	path := filepath.Join(dir, "a.db")
	db, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	if err := syscall.Mount("", dir, "", syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
		t.Fatal(err)
	}
	err = openErr(context.Background(), path)
	if err == nil || !strings.Contains(err.Error(), "read-only") || strings.Contains(err.Error(), "no such file") {
		t.Fatalf("Open in a read-only directory: %v, want it to say read-only", err)
	}
}
