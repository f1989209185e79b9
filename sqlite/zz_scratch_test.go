package sqlite

import (
	"database/sql"
	"context"
	"math/rand/v2"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestZZScale(t *testing.T) {
	v := os.Getenv("ZZ")
	if v == "" {
		return
	}
	path := t.TempDir() + "/x.db"
	if ps := os.Getenv("PS"); ps != "" {
		registerDriver()
		w, _ := sql.Open(driverName, "file:"+path)
		if _, err := w.Exec("PRAGMA page_size=" + ps + "; CREATE TABLE zz(x); DROP TABLE zz"); err != nil {
			t.Fatal(err)
		}
		w.Close()
	}
	db, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, s := range strings.Split(v, ";") {
		if s == "x" {
			continue
		}
		if _, err := db.w.Exec(s); err != nil {
			t.Fatal(err)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	zipf := rand.NewZipf(rng, 1.1, 1, benchVocab-1)
	ms := make([]*Message, 0, 1000)
	start := time.Now()
	var ru0 syscall.Rusage
	syscall.Getrusage(0, &ru0)
	for i := range 200_000 {
		ms = append(ms, benchMessage(rng, zipf, i))
		if len(ms) == 1000 {
			if _, err := db.AppendBatch(context.Background(), ms); err != nil {
				t.Fatal(err)
			}
			ms = ms[:0]
		}
		if (i+1)%100_000 == 0 {
			var ru syscall.Rusage
			syscall.Getrusage(0, &ru)
			el := time.Since(start)
			t.Logf("%d: %.0f msgs/s real; user %.1fs sys %.1fs; inblock %d outblock %d", i+1, 100000/el.Seconds(),
				time.Duration(ru.Utime.Nano()-ru0.Utime.Nano()).Seconds(), time.Duration(ru.Stime.Nano()-ru0.Stime.Nano()).Seconds(), ru.Inblock-ru0.Inblock, ru.Oublock-ru0.Oublock)
			start = time.Now()
			ru0 = ru
		}
	}
}
