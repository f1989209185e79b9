package bouncer

import (
	"crypto/tls"
	"encoding/base64"
	"encoding/xml"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"xmppbouncer/internal/testserver"
	"xmppbouncer/stanza"
)

// The crash probe of issue 16 in small: the real binary is killed with
// SIGKILL killCycles times while carol sends chats to the account, bob
// floods a room the account keeps, a laptop client reconnects after each
// restart and a phone, both with XEP-0198, drops and resumes (a stanza
// counts as received once the client acknowledged it). No chat may be
// lost (every chat carol sent without getting an error reaches a local
// client) or reach one client twice, and the archive holds every room
// message exactly once.
func TestKillLoopLosesNoChat(t *testing.T) {
	if testing.Short() {
		t.Skip("kill loop: seconds of real traffic")
	}
	cycles := killCycles()
	srv := testserver.Start(t)
	dir := t.TempDir()
	bin := buildBinary(t, dir)
	listen, direct := freeListen(t), freeListen(t)
	room := "probe@" + srv.MUC
	cfgPath := killLoopConfig(t, srv, dir, listen, direct, room)
	boot := &env{t: t, srv: srv}
	bob := boot.bobInRoom(room)
	carol := boot.availableUser("carol", "desk")

	var stop atomic.Bool
	var wg sync.WaitGroup
	var chats, roomMsgs atomic.Int64
	wg.Add(2)
	go func() { // carol's chats
		defer wg.Done()
		for i := 0; !stop.Load(); i++ {
			carol.SendEl(stanza.New(stanza.NSClient, "message", "to", "alice@localhost", "type", "chat", "id", "C"+strconv.Itoa(i)).
				Append(stanza.New(stanza.NSClient, "body").AppendText("C" + strconv.Itoa(i))))
			chats.Add(1)
			time.Sleep(60 * time.Millisecond)
		}
	}()
	go func() { // bob's flood
		defer wg.Done()
		for i := 0; !stop.Load(); i++ {
			bob.SendEl(stanza.New(stanza.NSClient, "message", "to", room, "type", "groupchat", "id", "R"+strconv.Itoa(i)).
				Append(stanza.New(stanza.NSClient, "body").AppendText("R" + strconv.Itoa(i))))
			roomMsgs.Add(1)
			time.Sleep(25 * time.Millisecond)
		}
	}()

	got := map[string]map[string]int{"laptop": {}, "phone": {}} // resource → chat → times
	collect := func(res string, els []*stanza.Element) {
		for _, el := range els {
			if el.Kind() != "message" || el.Type() == "error" {
				continue
			}
			if from, _ := splitJID(el.From()); from != "carol@localhost" {
				continue
			}
			if b := el.ChildText(stanza.NSClient, "body"); strings.HasPrefix(b, "C") {
				got[res][b]++
			}
		}
	}
	ph := &probePhone{t: t, addr: direct, res: "phone"}
	lap := &probePhone{t: t, addr: direct, res: "laptop"}
	rnd := rand.New(rand.NewPCG(1, 16))
	var resumes, resumeFails int
	for cycle := 0; cycle <= cycles; cycle++ {
		cmd, log := runBinary(t, bin, cfgPath)
		log.wait(t, "upstream online", 20*time.Second)
		if lap.connect() {
			resumes++
		} else if lap.id != "" {
			resumeFails++
		}
		if ph.connect() {
			resumes++
		} else if ph.id != "" {
			resumeFails++
		}
		time.Sleep(time.Duration(500+rnd.IntN(700)) * time.Millisecond)
		lap.ack()
		ph.ack()
		ph.drop() // the phone loses its network
		time.Sleep(time.Duration(200+rnd.IntN(500)) * time.Millisecond)
		if ph.connect() {
			resumes++
		} else {
			resumeFails++
		}
		time.Sleep(time.Duration(300+rnd.IntN(900)) * time.Millisecond)
		if cycle == cycles {
			// The last run: let everything in flight arrive, then stop.
			stop.Store(true)
			wg.Wait()
			time.Sleep(3 * time.Second)
			ph.ack()
			lap.ack()
			collect("laptop", lap.take())
			collect("phone", ph.take())
			_ = cmd.Process.Signal(syscall.SIGTERM)
			log.wait(t, "shutdown: closing the database", 20*time.Second)
			_ = cmd.Wait()
			break
		}
		ph.ack()
		lap.ack()
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
		collect("laptop", lap.take())
		collect("phone", ph.take())
		lap.drop()
		ph.drop()
	}

	errored := map[string]bool{}
	for _, el := range carol.Backlog() {
		if el.Kind() == "message" && el.Type() == "error" {
			errored[el.ID()] = true
		}
	}
	lost, doubled := 0, 0
	for i := 0; i < int(chats.Load()); i++ {
		c := "C" + strconv.Itoa(i)
		if got["laptop"][c] == 0 && got["phone"][c] == 0 && !errored[c] {
			lost++
			t.Errorf("chat %s lost", c)
		}
		for res, m := range got {
			if m[c] > 1 {
				doubled++
				t.Errorf("chat %s reached %s %d times", c, res, m[c])
			}
		}
	}
	t.Logf("%d kills: %d chats (%d bounced to carol), %d lost, %d doubled; %d room messages; phone resumes %d ok, %d failed",
		cycles, chats.Load(), len(errored), lost, doubled, roomMsgs.Load(), resumes, resumeFails)

	// Every room message archived exactly once (the room's MAM is the
	// reference).
	roomIDs := roomArchiveIDs(t, bob, room)
	ours := archivedStanzaIDs(t, filepath.Join(dir, "archive.db"), room)
	for id := range roomIDs {
		if !ours[id] {
			t.Errorf("room message %s not archived", id)
		}
	}
	if len(ours) != len(roomIDs) || int64(len(roomIDs)) < roomMsgs.Load() {
		t.Errorf("archive %d, room MAM %d, sent %d", len(ours), len(roomIDs), roomMsgs.Load())
	}
}

// killCycles is 5, or XB_KILL_CYCLES (the probe ran 20).
func killCycles() int {
	if n, err := strconv.Atoi(os.Getenv("XB_KILL_CYCLES")); err == nil && n > 0 {
		return n
	}
	return 5
}

func killLoopConfig(t *testing.T, srv *testserver.Server, dir, listen, direct, room string) string {
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
direct_tls_address = %q
[auth]
password = "x"
[storage]
path = %q
[log]
level = "debug"
[[rooms]]
jid = %q
nick = "alice"
autojoin = true
`, srv.Addr, srv.CAFile, listen, direct, filepath.Join(dir, "archive.db"), room)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfgPath
}

// probePhone is a phone with XEP-0198 that keeps its session id across
// connections: it resumes when it can and binds "phone" otherwise.
type probePhone struct {
	t    *testing.T
	addr string
	res  string
	c    *smClient
	id   string
	h    int // stanzas handled (XEP-0198 §4), of the session id
	got  []*stanza.Element
}

// connect resumes the session or starts one; it reports a resume.
func (p *probePhone) connect() bool {
	t := p.t
	t.Helper()
	c, d := dialSMAt(t, p.addr)
	if p.id != "" {
		c.write(header("localhost") + fmt.Sprintf(`<resume xmlns='urn:xmpp:sm:3' previd='%s' h='%d'/>`, p.id, p.h))
		c.readOne(d) // features
		r := c.readOne(d)
		if r.Is(nsSMTest, "resumed") {
			p.c = c
			go c.readLoop(d)
			return true
		}
	} else {
		c.write(header("localhost"))
		c.readOne(d)
	}
	go c.readLoop(d)
	p.c = c
	c.bind(p.res)
	p.id, p.h = c.enable(), 0
	c.received() // the bind result is not counted
	c.write(`<presence/>`)
	return false
}

// ack counts what arrived and acknowledges it.
func (p *probePhone) ack() {
	if p.c == nil {
		return
	}
	for _, el := range p.c.received() {
		p.h++
		p.got = append(p.got, el)
	}
	p.c.write(fmt.Sprintf(`<a xmlns='urn:xmpp:sm:3' h='%d'/>`, p.h))
	time.Sleep(100 * time.Millisecond) // let it land before anything drastic
}

func (p *probePhone) drop() {
	if p.c != nil {
		p.c.drop()
		p.c = nil
	}
}

// take returns what the phone handled so far.
func (p *probePhone) take() []*stanza.Element {
	out := p.got
	p.got = nil
	return out
}

// dialSMAt is dialSMAuth for a bouncer at addr (direct TLS).
func dialSMAt(t *testing.T, addr string) (*smClient, *xml.Decoder) {
	t.Helper()
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	tc := tls.Client(raw, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"xmpp-client"}})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c := &smClient{t: t, raw: raw, tc: tc, arrive: make(chan struct{}, 1), ended: make(chan struct{})}
	t.Cleanup(func() { raw.Close() })
	c.bytes = &countConn{Conn: tc}
	d := xml.NewDecoder(c.bytes)
	c.write(header("localhost"))
	c.readOne(d)
	c.write(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>` + base64.StdEncoding.EncodeToString([]byte("\x00alice\x00x")) + `</auth>`)
	if s := c.readOne(d); s.Name.Local != "success" {
		t.Fatalf("auth: %s", s)
	}
	return c, xml.NewDecoder(c.bytes)
}

var _ = exec.Command
