package sqlite

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
)

func BenchmarkZZVariants(b *testing.B) {
	variants := map[string][]string{
		"full":    nil,
		"nofts":   {"DROP TRIGGER messages_fts_ai"},
		"nonick":  {"DROP INDEX messages_room_nick"},
		"nosid":   {"DROP INDEX messages_room_stanza_id"},
		"bare":    {"DROP TRIGGER messages_fts_ai", "DROP INDEX messages_room_nick", "DROP INDEX messages_room_stanza_id", "DROP INDEX messages_room_stamp"},
	}
	for name, stmts := range variants {
		b.Run(name, func(b *testing.B) {
			db, _ := openTest(b)
			for _, s := range stmts {
				if _, err := db.w.Exec(s); err != nil {
					b.Skip(err)
				}
			}
			rng := rand.New(rand.NewPCG(5, 6))
			zipf := rand.NewZipf(rng, 1.1, 1, benchVocab-1)
			size := 1000
			ms := make([]*Message, b.N*size)
			for i := range ms {
				ms[i] = benchMessage(rng, zipf, i)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := db.AppendBatch(context.Background(), ms[i*size:(i+1)*size]); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "msgs/s")
			_ = fmt.Sprint()
		})
	}
}
