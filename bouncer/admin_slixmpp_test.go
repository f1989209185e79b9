package bouncer

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"xmppbouncer/internal/testdeps"
)

// adminPython has Debian's python3-slixmpp.
const adminPython = "/usr/bin/python3"

// slixmppAdhoc lists the account domain's commands with slixmpp's
// xep_0050 client, runs the bouncer's status and the clients command (two
// steps), and prints what it saw.
const slixmppAdhoc = `
import asyncio, ssl, sys
import slixmpp

jid, pw, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
domain = jid.split("@")[1]

class Client(slixmpp.ClientXMPP):
    def __init__(self):
        super().__init__(jid + "/slix", pw)
        self.register_plugin("xep_0030")
        self.register_plugin("xep_0004")
        self.register_plugin("xep_0050")
        self.done = self.loop.create_future()
        self.add_event_handler("session_start", self.start)

    async def start(self, event):
        try:
            self.send_presence()
            items = await self["xep_0050"].get_commands(jid=domain)
            for it in items["disco_items"]["items"]:
                print("ITEM", it[1], "|", it[2], flush=True)
            iq = await self["xep_0050"].send_command(domain, "` + AdminNodeStatus + `")
            print("STATUS", iq["command"]["status"], flush=True)
            for var, v in iq["command"]["form"].get_values().items():
                print("FIELD", var, "=", v, flush=True)
            # The rooms form: its fixed lines as slixmpp keeps them (by var).
            iq = await self["xep_0050"].send_command(domain, "` + AdminNodeRooms + `")
            for var, f in iq["command"]["form"].get_fields().items():
                if f["type"] == "fixed":
                    print("ROOMLINE", var, "=", f["value"], flush=True)
            await self["xep_0050"].send_command(domain, "` + AdminNodeRooms + `", action="cancel", sessionid=iq["command"]["sessionid"])
            iq = await self["xep_0050"].send_command(domain, "` + AdminNodeClients + `")
            sid = iq["command"]["sessionid"]
            form = iq["command"]["form"]
            for var, f in form.get_fields().items():
                if f["type"] == "fixed":
                    print("CLIENTLINE", var, "=", f["value"], flush=True)
                if f["type"] in ("list-single", "list-multi"):
                    for o in f["options"]:
                        print("OPTION", var, o["label"], "=", repr(o["value"]), flush=True)
            # Enter: submit what the form came with.
            form["type"] = "submit"
            iq = await self["xep_0050"].send_command(domain, "` + AdminNodeClients + `", action="complete", sessionid=sid, payload=form)
            for note in iq["command"]["notes"]:
                print("NOTE", note[0], note[1], flush=True)
            # Reconnect asks first; completing the form as it came does not reconnect.
            iq = await self["xep_0050"].send_command(domain, "` + AdminNodeReconnect + `")
            print("RECONNECT", iq["command"]["status"], flush=True)
            form = iq["command"]["form"]
            form["type"] = "submit"
            iq = await self["xep_0050"].send_command(domain, "` + AdminNodeReconnect + `", action="complete", sessionid=iq["command"]["sessionid"], payload=form)
            for note in iq["command"]["notes"]:
                print("NOTE", note[0], note[1], flush=True)
            self.done.set_result("OK")
        except Exception as e:
            self.done.set_result("ERROR %r" % e)

c = Client()
c.ssl_context.check_hostname = False
c.ssl_context.verify_mode = ssl.CERT_NONE
c.connect(address=("127.0.0.1", port))
try:
    result = c.loop.run_until_complete(asyncio.wait_for(c.done, 30))
except asyncio.TimeoutError:
    result = "TIMEOUT"
print(result, flush=True)
c.disconnect()
c.loop.run_until_complete(asyncio.sleep(0.2))
sys.exit(0 if result == "OK" else 1)
`

func TestAdminSlixmppXEP0050(t *testing.T) {
	testdeps.Slixmpp(t)
	e := newEnv(t, nil, nil)
	gajim := e.availableClient("gajim")
	_ = e.availableClient("phone")
	rooms := []string{"slixa@" + e.srv.MUC, "slixb@" + e.srv.MUC}
	for _, r := range rooms {
		join(t, gajim, r, "alice", "")
	}
	_, port, _ := strings.Cut(e.lsrv.Addr().String(), ":")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, adminPython, "-c", slixmppAdhoc, e.cfg.Upstream.JID, localPassword, port).CombinedOutput()
	text := string(out)
	if err != nil {
		t.Fatalf("slixmpp: %v\n%s", err, text)
	}
	for _, want := range []string{
		"ITEM " + AdminNodeStatus + " | Bouncer: status",
		"ITEM " + AdminNodeRooms,
		"STATUS completed",
		"FIELD upstream = connected as alice@localhost/bouncer",
		"gajim, from 127.0.0.1",
		"slix, from 127.0.0.1",
		"NOTE info Nobody disconnected.",
		"RECONNECT executing",
		"NOTE info Not reconnected",
		"\nOK",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("slixmpp output lacks %q:\n%s", want, text)
		}
	}
	// slixmpp keeps a form's fields by var: every line must have its own.
	if n := strings.Count(text, "\nCLIENTLINE "); n != 3 {
		t.Errorf("slixmpp sees %d lines of the clients form, want 3 (gajim, phone, slix):\n%s", n, text)
	}
	if n := strings.Count(text, "\nROOMLINE "); n != 2 {
		t.Errorf("slixmpp sees %d lines of the rooms form, want 2:\n%s", n, text)
	}
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, "OPTION ") && strings.HasSuffix(l, "= ''") {
			t.Errorf("an option without a value (Profanity crashes on it): %s", l)
		}
	}
	if n := e.up.Status().Reconnects; n != 0 {
		t.Errorf("slixmpp pressing Enter on reconnect reconnected upstream")
	}
}
