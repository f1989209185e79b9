package bouncer

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"xmppbouncer/internal/testclient"
	"xmppbouncer/internal/testserver"
	"xmppbouncer/sqlite"
	"xmppbouncer/stanza"
	"xmppbouncer/store"
)

// The real binary is killed with SIGKILL in the middle of a 2,000-message
// flood. After a restart and the gap fill, its archive holds exactly the
// stanza-ids of the room's own MAM archive.
func TestKillDuringFlood(t *testing.T) {
	srv := testserver.Start(t)
	dir := t.TempDir()
	bin := buildBinary(t, dir)
	room := "flood@" + srv.MUC
	cfgPath := binaryConfig(t, srv, dir, "127.0.0.1:0", fmt.Sprintf("[[rooms]]\njid = %q\nnick = \"alice\"\nautojoin = true\n", room))
	bob := (&env{t: t, srv: srv}).bobInRoom(room)

	start := func() (*exec.Cmd, *logWatch) { return runBinary(t, bin, cfgPath) }
	cmd, log := start()
	log.wait(t, "joined room", 20*time.Second)
	bob.Expect(t, "alice joins", presenceFrom(room+"/alice"))

	const total = 2000
	killed := false
	for i := 0; i < total; i++ {
		bob.Send(t, fmt.Sprintf(`<message to="%s" type="groupchat" id="f-%d"><body>flood %d</body></message>`, room, i, i))
		if i == total/2 {
			_ = cmd.Process.Signal(syscall.SIGKILL)
			_ = cmd.Wait()
			killed = true
		}
	}
	if !killed {
		t.Fatal("never killed")
	}
	// Prosody logs every stanza at debug level here, so the flood takes a while.
	bob.Timeout = 2 * time.Minute
	bob.Expect(t, "last echo", hasBody(fmt.Sprintf("flood %d", total-1)))
	bob.Timeout = 10 * time.Second
	cmd, log = start()
	log.wait(t, "gap fill complete", 2*time.Minute)
	_ = cmd.Process.Signal(syscall.SIGTERM)
	_ = cmd.Wait()

	roomIDs := roomArchiveIDs(t, bob, room)
	ours := archivedStanzaIDs(t, filepath.Join(dir, "archive.db"), room)
	if len(roomIDs) < total {
		t.Fatalf("room MAM has only %d messages", len(roomIDs))
	}
	for id := range roomIDs {
		if !ours[id] {
			t.Fatalf("archive misses %s (ours %d, room %d)", id, len(ours), len(roomIDs))
		}
	}
	if len(ours) != len(roomIDs) {
		t.Fatalf("archive has %d messages, room MAM %d", len(ours), len(roomIDs))
	}
}

// roomArchiveIDs pages through the room's own MAM archive as bob.
func roomArchiveIDs(t *testing.T, bob *testclientT, room string) map[string]bool {
	ids := map[string]bool{}
	after := ""
	for page := 0; page < 100; page++ {
		qid := fmt.Sprintf("r%d", page)
		set := `<set xmlns="http://jabber.org/protocol/rsm"><max>250</max>`
		if after != "" {
			set += `<after>` + after + `</after>`
		}
		bob.Send(t, `<iq type="set" id="`+qid+`" to="`+room+`"><query xmlns="urn:xmpp:mam:2" queryid="`+qid+`">`+set+`</set></query></iq>`)
		for {
			el := bob.Expect(t, "room MAM", func(el *stanza.Element) bool {
				return el.ID() == qid || el.Child(stanza.NSMAM, "result").Get("queryid") == qid
			})
			if el.Kind() == "iq" {
				fin := el.Child(stanza.NSMAM, "fin")
				if fin == nil {
					t.Fatalf("room MAM failed: %s", el)
				}
				if fin.Get("complete") == "true" {
					return ids
				}
				after = fin.Child(stanza.NSRSM, "set").ChildText(stanza.NSRSM, "last")
				break
			}
			ids[el.Child(stanza.NSMAM, "result").Get("id")] = true
		}
	}
	t.Fatal("room MAM paging did not complete")
	return nil
}

// binaryConfig writes a config for the real binary in front of srv, with
// its archive in dir, listening on listen, plus extra TOML.
func binaryConfig(t *testing.T, srv *testserver.Server, dir, listen, extra string) string {
	t.Helper()
	cfgPath := filepath.Join(dir, "xmppbouncer.toml")
	cfg := fmt.Sprintf(`
[upstream]
jid = "alice@localhost"
password = "alicepw"
address = %q
ca_file = %q
[listen]
address = %q
[auth]
password = "x"
[storage]
path = %q
[log]
level = "debug"
`, srv.Addr, srv.CAFile, listen, filepath.Join(dir, "archive.db")) + extra
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfgPath
}

// buildBinary builds the real xmppbouncer binary into dir.
func buildBinary(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "xmppbouncer")
	build := exec.Command("go", "build", "-o", bin, "../cmd/xmppbouncer")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

// runBinary starts the binary with a config file; it is killed when the
// test ends if it is still running.
func runBinary(t *testing.T, bin, cfgPath string) (*exec.Cmd, *logWatch) {
	t.Helper()
	cmd := exec.Command(bin, "-config", cfgPath)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd, watchLog(stderr)
}

// logWatch collects a subprocess's log lines.
type logWatch struct {
	lines chan string
}

func watchLog(r interface{ Read([]byte) (int, error) }) *logWatch {
	w := &logWatch{lines: make(chan string, 100000)}
	go func() {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			w.lines <- sc.Text()
		}
		close(w.lines)
	}()
	return w
}

func (w *logWatch) wait(t *testing.T, what string, d time.Duration) {
	t.Helper()
	deadline := time.After(d)
	var seen []string
	for {
		select {
		case l, ok := <-w.lines:
			if !ok {
				t.Fatalf("bouncer exited before %q; log tail:\n%s", what, tail(seen))
			}
			seen = append(seen, l)
			if strings.Contains(l, what) {
				return
			}
		case <-deadline:
			t.Fatalf("no %q in the bouncer's log within %s; tail:\n%s", what, d, tail(seen))
		}
	}
}

func tail(lines []string) string {
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return strings.Join(lines, "\n")
}

// Offline messages survive a kill -9 of the real binary: stored before
// anything else happens to them, they reach the next client once.
func TestOfflineSurvivesKill(t *testing.T) {
	srv := testserver.Start(t)
	dir := t.TempDir()
	bin := buildBinary(t, dir)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listen := ln.Addr().String()
	ln.Close()
	cfgPath := binaryConfig(t, srv, dir, listen, "")
	start := func() (*exec.Cmd, *logWatch) { return runBinary(t, bin, cfgPath) }
	cmd, log := start()
	log.wait(t, "upstream online", 20*time.Second)
	bob := (&env{t: t, srv: srv}).availableUser("bob", "desk")
	for i := 0; i < 3; i++ {
		bob.Send(t, fmt.Sprintf(`<message to="alice@localhost" type="chat" id="k%d"><body>before the kill %d</body></message>`, i, i))
		log.wait(t, "stored offline", 10*time.Second)
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()

	cmd, log = start()
	log.wait(t, "upstream online", 20*time.Second)
	a := testclient.Dial(t, testclient.Options{Addr: listen, JID: "alice@localhost", Password: "x", Resource: "phone", InsecureSkipVerify: true})
	a.Send(t, `<presence/>`)
	expectBodies(t, a, "before the kill 0", "before the kill 1", "before the kill 2")
	a.ExpectNone(t, 500*time.Millisecond, anyBody)

	// SIGTERM: the shutdown goes in its order (issue 9, defect 7): clients
	// get system-shutdown, then the upstream session ends, the archive
	// drains, and the database is closed; the process exits 0.
	_ = cmd.Process.Signal(syscall.SIGTERM)
	a.WaitClosed(t)
	if c := a.StreamErrorCondition(); c != "system-shutdown" {
		t.Fatalf("client stream ended with %q", c)
	}
	for _, phase := range []string{"shutdown: local clients closed", "shutdown: draining the archive", "shutdown: closing the database"} {
		log.wait(t, phase, 20*time.Second)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
}

// archivedStanzaIDs reads the stanza-ids of room in the archive at path,
// failing the test on one archived twice.
func archivedStanzaIDs(t *testing.T, path, room string) map[string]bool {
	t.Helper()
	db, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ours := map[string]bool{}
	for after := ""; ; {
		page, err := db.Query(context.Background(), store.Query{Room: room, Max: 500, After: after})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range page.Messages {
			if ours[m.StanzaID] {
				t.Errorf("room message %s archived twice", m.StanzaID)
			}
			ours[m.StanzaID] = true
		}
		if page.Complete || page.Last == "" {
			return ours
		}
		after = page.Last
	}
}
