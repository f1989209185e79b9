package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"xmppbouncer/config"
	"xmppbouncer/sqlite"
)

// checkDB is `xmppbouncer check-db`: PRAGMA quick_check on the database,
// read-only, safe while the bouncer runs. Exit 0 when sound, 1 when
// damaged or unreadable, 2 for a usage or config error.
func checkDB(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check-db", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "path to the TOML config file (its [storage] path is checked)")
	dbPath := fs.String("db", "", "path to the database file, instead of -config")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	path := *dbPath
	switch {
	case path != "" && *cfgPath != "":
		fmt.Fprintln(stderr, "check-db: give -config FILE or -db PATH, not both")
		return 2
	case path == "" && *cfgPath == "":
		fmt.Fprintln(stderr, "check-db: -config FILE or -db PATH is required")
		return 2
	case path == "":
		cfg, err := config.Load(*cfgPath)
		if err != nil {
			fmt.Fprintln(stderr, "config:", err)
			return 2
		}
		path = cfg.Storage.Path
	}
	if _, err := os.Stat(path); err != nil {
		fmt.Fprintln(stderr, "check-db:", err)
		return 1
	}
	err := sqlite.Check(context.Background(), path)
	var ce *sqlite.CorruptError
	switch {
	case err == nil:
		fmt.Fprintf(stdout, "%s: ok (PRAGMA quick_check found no damage)\n", path)
		return 0
	case errors.As(err, &ce):
		fmt.Fprintf(stdout, "%s: DAMAGED; PRAGMA quick_check says:\n", path)
		for _, p := range ce.Problems {
			fmt.Fprintf(stdout, "  %s\n", p)
		}
		fmt.Fprintf(stderr, "check-db: %s is damaged; %s\n", path, sqlite.RecoveryHint(path))
		return 1
	default:
		fmt.Fprintf(stderr, "check-db: cannot read %s: %v\n", path, err)
		return 1
	}
}
