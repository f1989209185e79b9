package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"xmppbouncer/internal/testclient"
	"xmppbouncer/internal/testserver"
	"xmppbouncer/stanza"
)

// BenchmarkDiskFullOfflineRSS measures the figure of issue 17: the
// bouncer's RSS (the real binary, its database on a full tmpfs, no client
// connected) while 5,500 chats of 2 KB arrive for the offline store, and
// how many of them were refused with resource-constraint. Run with
// -benchtime 1x (as root: it mounts a tmpfs).
func BenchmarkDiskFullOfflineRSS(b *testing.B) {
	for range b.N {
		srv := testserver.Start(b)
		dir, ok := mountTmpfs(b, 8<<20)
		if !ok {
			b.Skip("cannot mount a tmpfs (needs root or CAP_SYS_ADMIN)")
		}
		p := startBinary(b, "-config", prosodyConfig(b, srv, filepath.Join(dir, "x.db"), ""))
		p.waitLog(b, "upstream online", 15*time.Second)
		bob := testclient.Dial(b, testclient.Options{Addr: srv.Addr, JID: srv.JID("bob"), Password: testserver.Password("bob"), Resource: "desk", InsecureSkipVerify: true})
		bob.Send(b, `<presence/>`)
		fill, err := os.Create(filepath.Join(dir, "fill"))
		if err != nil {
			b.Fatal(err)
		}
		chunk := make([]byte, 4096)
		for {
			if _, err := fill.Write(chunk); err != nil {
				break
			}
		}
		fill.Close()
		time.Sleep(time.Second)
		pid := p.cmd.Process.Pid
		rss0 := rssKB(pid)
		body := strings.Repeat("z", 2000)
		chats := 5500
		if n, err := strconv.Atoi(os.Getenv("XB_CHATS")); err == nil && n > 0 {
			chats = n // XB_CHATS=n sends n instead
		}
		for i := range chats {
			el := stanza.MustParse(fmt.Sprintf(`<message to='%s' type='chat' id='d%d'><body>%d %s</body></message>`, srv.JID(testserver.Alice), i, i, body))
			for !bob.SendEl(el) {
				select {
				case <-bob.Closed():
					b.Fatalf("bob's connection closed after %d chats: %v", i, bob.Err())
				case <-time.After(50 * time.Millisecond):
				}
			}
		}
		time.Sleep(5 * time.Second)
		rss1 := rssKB(pid)
		refused := 0
		for _, el := range bob.Backlog() {
			if el.Kind() == "message" && el.Type() == "error" && stanza.ErrorCondition(el) == "resource-constraint" {
				refused++
			}
		}
		fmt.Printf("disk full, %d chats of 2 KB for the offline store: RSS %d MB -> %d MB, %d refused with resource-constraint\n", chats, rss0/1024, rss1/1024, refused)
		b.ReportMetric(float64(rss1-rss0)/1024, "RSS-growth-MB")
		p.stop(b)
	}
}
