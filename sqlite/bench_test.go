package sqlite

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"xmppbouncer/store"
)

// The 1M-message archive is only built by the benchmarks that need it, so
// `go test` without -bench never pays for it. It is cached in os.TempDir,
// keyed by schema version and full-text flavour, and rebuilt when missing.
const (
	benchMessages = 1_000_000
	benchRooms    = 10
	benchVocab    = 5000
)

func benchRoom(r int) string { return fmt.Sprintf("room%02d@conference.example.org", r) }

// benchSID is message i's room-assigned stanza-id; message i is in room
// i%benchRooms.
func benchSID(i int) string {
	x := uint64(i) + 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return fmt.Sprintf("%016x-%d", x^(x>>31), i)
}

// benchWord returns word k of the vocabulary ("w0" is the most frequent).
func benchWord(k int) string { return fmt.Sprintf("w%d", k) }

var benchStart = time.Date(2023, 1, 1, 0, 0, 0, 0, time.UTC)

func benchMessage(rng *rand.Rand, zipf *rand.Zipf, i int) *store.Message {
	var sb strings.Builder
	n := 3 + rng.IntN(13)
	for j := range n {
		if j > 0 {
			sb.WriteByte(' ')
		}
		sb.WriteString(benchWord(int(zipf.Uint64())))
	}
	body := sb.String()
	room := benchRoom(i % benchRooms)
	nick := fmt.Sprintf("user%d", rng.IntN(40))
	sid := benchSID(i)
	x := fmt.Sprintf(`<message xmlns="jabber:client" from="%s/%s" type="groupchat" id="%x"><body>%s</body>`+
		`<stanza-id xmlns="urn:xmpp:sid:0" id="%s" by="%s"/><origin-id xmlns="urn:xmpp:sid:0" id="%x"/></message>`,
		room, nick, rng.Uint64(), body, sid, room, rng.Uint64())
	return &store.Message{
		Room: room, StanzaID: sid, ID: fmt.Sprintf("%x", rng.Uint64()), Nick: nick,
		// 1M messages over ~1 year: one every ~31 s overall.
		Stamp: benchStart.Add(time.Duration(i) * 31 * time.Second), Body: &body, XML: x,
	}
}

var (
	bigOnce sync.Once
	bigPath string
	bigErr  error
)

func bigArchive(b *testing.B) *DB {
	b.Helper()
	bigOnce.Do(func() {
		bigPath = filepath.Join(os.TempDir(), fmt.Sprintf("xmppbouncer-bench-v%d-fts%v-%d.db", SchemaVersion(), FullTextFTS5, benchMessages))
		if _, err := os.Stat(bigPath); err == nil {
			return
		}
		bigErr = buildBigArchive(b, bigPath)
	})
	if bigErr != nil {
		b.Fatal(bigErr)
	}
	db, err := Open(context.Background(), bigPath)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	return db
}

// reportSize reports the archive file size per million messages. It runs
// after the timed loop, since ResetTimer drops reported metrics.
func reportSize(b *testing.B) {
	if fi, err := os.Stat(bigPath); err == nil {
		b.ReportMetric(float64(fi.Size())/(1<<20)*1e6/benchMessages, "MB/1M-msgs")
	}
}

func buildBigArchive(b *testing.B, path string) error {
	tmp := path + ".building"
	for _, s := range []string{"", "-wal", "-shm"} {
		os.Remove(tmp + s)
	}
	ctx := context.Background()
	db, err := Open(ctx, tmp)
	if err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(1, 2))
	zipf := rand.NewZipf(rng, 1.1, 1, benchVocab-1)
	start := time.Now()
	const batch = 1000
	ms := make([]*store.Message, 0, batch)
	for i := range benchMessages {
		ms = append(ms, benchMessage(rng, zipf, i))
		if len(ms) == batch {
			if _, err := db.AppendBatch(ctx, ms); err != nil {
				db.Close()
				return err
			}
			ms = ms[:0]
		}
	}
	el := time.Since(start)
	if err := db.Close(); err != nil {
		return err
	}
	fi, err := os.Stat(tmp)
	if err != nil {
		return err
	}
	b.Logf("built %d-message archive in %v (%.0f msgs/s incl. generation, batches of %d); file %.1f MB",
		benchMessages, el.Round(time.Millisecond), benchMessages/el.Seconds(), batch, float64(fi.Size())/(1<<20))
	return os.Rename(tmp, path)
}

func BenchmarkAppend(b *testing.B) {
	db, _ := openTest(b)
	rng := rand.New(rand.NewPCG(3, 4))
	zipf := rand.NewZipf(rng, 1.1, 1, benchVocab-1)
	ms := make([]*store.Message, b.N)
	for i := range ms {
		ms[i] = benchMessage(rng, zipf, i)
	}
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := db.Append(ctx, ms[i]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

func BenchmarkAppendBatch(b *testing.B) {
	for _, size := range []int{100, 1000} {
		b.Run(fmt.Sprint("batch=", size), func(b *testing.B) {
			db, _ := openTest(b)
			rng := rand.New(rand.NewPCG(5, 6))
			zipf := rand.NewZipf(rng, 1.1, 1, benchVocab-1)
			ms := make([]*store.Message, b.N*size)
			for i := range ms {
				ms[i] = benchMessage(rng, zipf, i)
			}
			ctx := context.Background()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := db.AppendBatch(ctx, ms[i*size:(i+1)*size]); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

func BenchmarkHistory50(b *testing.B) {
	db := bigArchive(b)
	ctx := context.Background()
	lim := store.NoHistoryLimit
	lim.MaxStanzas = 50
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ms, err := db.History(ctx, benchRoom(i%benchRooms), lim, 20)
		if err != nil || len(ms) != 50 {
			b.Fatalf("History: %d, %v", len(ms), err)
		}
	}
	reportSize(b)
}

func BenchmarkMAMPageRandom(b *testing.B) {
	db := bigArchive(b)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(7, 8))
	for _, kind := range []string{"after", "before", "with-nick", "start"} {
		b.Run(kind, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				k := rng.IntN(benchMessages)
				room := benchRoom(k % benchRooms)
				q := store.Query{Room: room, Max: 50}
				switch kind {
				case "after":
					q.After = benchSID(k)
				case "before":
					q.Before, q.BeforeSet = benchSID(k), true
				case "with-nick":
					q.With = room + "/user7"
					q.After = benchSID(k)
				case "start":
					// The usual catch-up query: everything since a
					// recent instant (the count covers that range).
					q.Start = benchStart.Add(time.Duration(k) * 31 * time.Second)
					q.Max = 50
				}
				p, err := db.Query(ctx, q)
				if err != nil || (kind == "after" && p.Count != benchMessages/benchRooms) {
					b.Fatalf("Query: %v count %d", err, p.Count)
				}
			}
		})
	}
}

func BenchmarkFullText(b *testing.B) {
	db := bigArchive(b)
	ctx := context.Background()
	// Word ranks in the Zipf(1.1) vocabulary: w3 is in a large share of
	// messages, w300 in a few thousand, w4000 in a few hundred.
	for _, w := range []int{3, 300, 4000} {
		b.Run(benchWord(w), func(b *testing.B) {
			hits := 0
			for i := 0; i < b.N; i++ {
				p, err := db.Query(ctx, store.Query{Room: benchRoom(i % benchRooms), FullText: benchWord(w), Max: 50, BeforeSet: true})
				if err != nil {
					b.Fatal(err)
				}
				hits += p.Count
			}
			// The mean over every room queried, not the last one's.
			b.ReportMetric(float64(hits)/float64(b.N), "hits/room")
			reportSize(b)
		})
	}
}
