package main

import (
	"bufio"
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"xmppbouncer/internal/testclient"
	"xmppbouncer/internal/testdeps"
	"xmppbouncer/internal/testserver"
	"xmppbouncer/stanza"
)

// TestDemoBotAnswersChats: the demo banner suggests chatting with bob, so
// the demo bot answers 1:1 messages, not only mentions in the room.
func TestDemoBotAnswersChats(t *testing.T) {
	python := testdeps.Slixmpp(t)
	srv := testserver.Start(t)
	host, port, _ := strings.Cut(srv.Addr, ":")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	room := "demo@" + srv.MUC
	bot := exec.CommandContext(ctx, python, "../../scripts/demobot.py", srv.JID("bob"), "bobpw", host, port, srv.CAFile, room, "bob")
	out, err := bot.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := bot.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = bot.Wait() }()
	joined := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "JOINED") {
				joined <- true
			}
		}
	}()
	select {
	case <-joined:
	case <-time.After(30 * time.Second):
		t.Fatal("the demo bot did not join its room")
	}
	alice := testclient.Dial(t, testclient.Options{Addr: srv.Addr, JID: srv.JID("alice"), Password: "alicepw", Resource: "laptop", InsecureSkipVerify: true})
	alice.Send(t, `<presence/>`)
	alice.Send(t, `<message type="chat" to="`+srv.JID("bob")+`" id="c1"><body>hi bob</body></message>`)
	alice.Expect(t, "bob's answer to a 1:1 chat", func(el *stanza.Element) bool {
		return el.Kind() == "message" && el.Type() == "chat" && strings.HasPrefix(el.From(), srv.JID("bob")) &&
			strings.Contains(el.ChildText(stanza.NSClient, "body"), "hi bob")
	})
}
