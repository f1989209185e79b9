package bouncer

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"xmppbouncer/stanza"
)

// TestCapsCacheBoundedUnderChurn: a client that announces a new caps ver
// in every presence (and answers each disco#info) cannot grow the caps
// cache past its bound, while the ver it announces now keeps its
// features in the account's caps.
func TestCapsCacheBoundedUnderChurn(t *testing.T) {
	e := newEnv(t, nil, nil)
	c := e.client("churner")
	const vers = capsCacheMax * 3
	for i := 0; i < vers; i++ {
		ver := fmt.Sprintf("ver-%04d=", i)
		c.Send(t, fmt.Sprintf(`<presence><c xmlns="%s" hash="sha-1" node="https://churn.example" ver="%s"/></presence>`, stanza.NSCaps, ver))
		q := c.Expect(t, "the bouncer's disco#info for "+ver, func(el *stanza.Element) bool {
			return el.Kind() == "iq" && el.Type() == "get" && el.Child(stanza.NSDiscoInfo, "query") != nil &&
				strings.HasSuffix(el.Child(stanza.NSDiscoInfo, "query").Get("node"), "#"+ver)
		})
		c.Send(t, fmt.Sprintf(`<iq type="result" id="%s" to="%s"><query xmlns="%s" node="https://churn.example#%s"><feature var="urn:example:churn:%d+notify"/></query></iq>`,
			q.ID(), q.From(), stanza.NSDiscoInfo, ver, i))
	}
	last := fmt.Sprintf("urn:example:churn:%d+notify", vers-1)
	e.waitFor("the last ver learnt", func() bool {
		var ok bool
		e.b.Do(func() { ok = e.b.caps.byVer[fmt.Sprintf("ver-%04d=", vers-1)] != nil })
		return ok
	})
	var n int
	var feats []string
	e.b.Do(func() { n, feats = len(e.b.caps.byVer), e.b.caps.features() })
	if n > capsCacheMax+1 {
		t.Errorf("caps cache holds %d vers after %d announced, want at most %d", n, vers, capsCacheMax+1)
	}
	if !strings.Contains(strings.Join(feats, " "), last) {
		t.Errorf("the current ver's feature %s is missing from the account's caps: %v", last, feats)
	}
	t.Logf("%d vers announced, %d kept", vers, n)
}

// TestAdminSessionsSweptByLoop: a command session nobody finishes is
// forgotten by the loop's sweep once its deadline passed, without another
// command running.
func TestAdminSessionsSweptByLoop(t *testing.T) {
	e := newEnv(t, nil, nil)
	admin := e.availableClient("gajim")
	first := command(t, admin, "localhost", AdminNodeClients, "", nil)
	id := first.Get("sessionid")
	if first.Get("status") != "executing" || id == "" {
		t.Fatalf("the clients command did not open a session: %s", first)
	}
	held := func() (ok bool) {
		e.b.Do(func() { _, ok = e.b.cmds.SessionDeadline(id) })
		return ok
	}
	if !held() {
		t.Fatal("the open command session is not remembered")
	}
	// Its time passes.
	e.b.Do(func() { e.b.cmds.SetSessionDeadline(id, time.Now().Add(-time.Second)) })
	deadline := time.Now().Add(4 * e.b.opt.SweepInterval)
	for held() {
		if time.Now().After(deadline) {
			t.Fatalf("an expired command session is still held after %v of sweeps", 4*e.b.opt.SweepInterval)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
