package bouncer

// Admin commands (XEP-0050) that the bouncer answers itself, so that a user
// can look after it from the client they already have open. They are
// listed next to the server's own commands: a client's disco#items for the
// node http://jabber.org/protocol/commands on the account's domain goes
// upstream as usual and the bouncer adds its entries to the answer
// (XEP-0050 §2.2). Only local clients reach them; an IQ from upstream to
// one of these nodes is refused with forbidden.
//
// Files: admin.go (dispatch, sessions, forms), admin_status.go (status,
// clients, reconnect), admin_rooms.go (rooms and kept-room state),
// admin_history.go (retention, prune, export), admin_stats.go (counters
// and the snapshot for metrics).

import (
	"crypto/rand"
	"encoding/hex"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"xmppbouncer/sessions"
	"xmppbouncer/stanza"
)

// NSCommands is XEP-0050's namespace, also the disco node that lists
// commands.
const NSCommands = "http://jabber.org/protocol/commands"

// adminNodePrefix starts the node of every bouncer command; a command IQ
// with another node is the server's and goes upstream.
const adminNodePrefix = "urn:xmppbouncer:command:"

// Bouncer command nodes.
const (
	AdminNodeStatus    = adminNodePrefix + "status"
	AdminNodeClients   = adminNodePrefix + "clients"
	AdminNodeRooms     = adminNodePrefix + "rooms"
	AdminNodeHistory   = adminNodePrefix + "history"
	AdminNodeReconnect = adminNodePrefix + "reconnect"
)

// adminCommand is one command the bouncer offers.
type adminCommand struct {
	node, name string
	run        func(b *Bouncer, c *adminCall)
}

// adminCommands lists the commands in the order clients show them.
func adminCommands() []adminCommand {
	return []adminCommand{
		{AdminNodeStatus, "Bouncer: status", (*Bouncer).cmdStatus},
		{AdminNodeClients, "Bouncer: local clients (list, disconnect)", (*Bouncer).cmdClients},
		{AdminNodeRooms, "Bouncer: rooms (list, join, keep, leave)", (*Bouncer).cmdRooms},
		{AdminNodeHistory, "Bouncer: history (retention, prune, export)", (*Bouncer).cmdHistory},
		{AdminNodeReconnect, "Bouncer: reconnect upstream", (*Bouncer).cmdReconnect},
		{AdminNodeFastTokens, "Bouncer: FAST login tokens (list, revoke a device)", (*Bouncer).cmdFastTokens},
	}
}

func findAdminCommand(node string) *adminCommand {
	for _, c := range adminCommands() {
		if c.node == node {
			return &c
		}
	}
	return nil
}

// adminState is what the admin commands keep. The maps belong to the loop;
// the atomics are also read by the pruner and by metrics.
type adminState struct {
	started  time.Time
	sessions map[string]*adminSession // XEP-0050 sessionid → multi-step command

	kept       []keptRoom // rooms kept by the rooms command, mirrored in SQLite
	keptSeq    uint64     // version of kept, so that writes land in order
	keptWriter keptWriter
	retention  atomic.Int64
	pruneWake  chan struct{}

	stats    Stats
	observer atomic.Pointer[Observer]
}

// adminSession is one multi-step command in progress (XEP-0050 §3.4).
type adminSession struct {
	node     string
	client   uint64 // the session that started it; nobody else may continue it
	deadline time.Time
}

// adminSessionTTL bounds how long a half-filled form is remembered.
const adminSessionTTL = 10 * time.Minute

func newAdminState(retention time.Duration) *adminState {
	a := &adminState{started: time.Now(), sessions: map[string]*adminSession{}, pruneWake: make(chan struct{}, 1)}
	a.retention.Store(int64(retention))
	return a
}

// adminCall is one command IQ from a local client.
type adminCall struct {
	s         *sessions.Session
	iq        *stanza.Element
	node      string
	action    string // execute, next, prev, complete, cancel
	sessionID string
	continued bool                // the IQ named a session: not the first step
	form      map[string][]string // the submitted data form; nil on the first step
}

// value returns the first submitted value of a field, trimmed.
func (c *adminCall) value(field string) string {
	if v := c.form[field]; len(v) > 0 {
		return strings.TrimSpace(v[0])
	}
	return ""
}

// adminIQ answers a local client's IQs that concern the bouncer's
// commands. It reports whether it answered.
func (b *Bouncer) adminIQ(s *sessions.Session, t target, el, payload *stanza.Element) bool {
	if t.to != "" && t.to != b.domain {
		return false
	}
	switch {
	case el.Type() == "get" && payload.Is(stanza.NSDiscoItems, "query") && payload.Get("node") == NSCommands:
		b.adminListCommands(s, t, el, payload)
		return true
	case el.Type() == "get" && payload.Is(stanza.NSDiscoInfo, "query") && strings.HasPrefix(payload.Get("node"), adminNodePrefix):
		b.adminCommandInfo(s, el, payload)
		return true
	case el.Type() == "set" && payload.Is(NSCommands, "command") && strings.HasPrefix(payload.Get("node"), adminNodePrefix):
		b.adminExecute(s, el, payload)
		return true
	}
	return false
}

// adminFromUpstream refuses command IQs from upstream to the bouncer's
// nodes: only the account's local clients may run them. It reports whether
// it answered.
func (b *Bouncer) adminFromUpstream(el, payload *stanza.Element) bool {
	node := ""
	switch {
	case payload.Is(NSCommands, "command"):
		node = payload.Get("node")
	case payload.Is(stanza.NSDiscoInfo, "query"):
		node = payload.Get("node")
	}
	if !strings.HasPrefix(node, adminNodePrefix) {
		return false
	}
	b.log.Warn("refused a bouncer command from upstream", "from", el.From(), "node", node)
	b.sendUp(upstreamError(el, stanza.ErrAuth, "forbidden"))
	return true
}

// adminItems are the disco#items entries of the bouncer's commands.
func (b *Bouncer) adminItems() []*stanza.Element {
	var out []*stanza.Element
	for _, c := range adminCommands() {
		out = append(out, stanza.New(stanza.NSDiscoItems, "item", "jid", b.domain, "node", c.node, "name", c.name))
	}
	return out
}

// adminListWait bounds how long the merged command list waits for the
// server's part before it answers with the bouncer's alone.
const adminListWait = 10 * time.Second

// adminListCommands asks upstream for the server's commands and answers
// the client with those plus the bouncer's; with upstream down or failing
// it answers with the bouncer's alone.
func (b *Bouncer) adminListCommands(s *sessions.Session, t target, el, payload *stanza.Element) {
	client := s.ID
	answered := false
	answer := func(server *stanza.Element) {
		if answered {
			return
		}
		answered = true
		s := b.reg.ByID(client)
		if s == nil {
			return
		}
		q := stanza.New(stanza.NSDiscoItems, "query", "node", NSCommands)
		if server != nil && server.Type() == "result" {
			for _, it := range server.Child(stanza.NSDiscoItems, "query").ChildrenNamed(stanza.NSDiscoItems, "item") {
				q.Append(it)
			}
		}
		q.Append(b.adminItems()...)
		b.sendTo(s, localResult(el, s, b.domain).Append(q))
	}
	up := stanza.New(stanza.NSClient, "iq", "type", "get", "to", b.domain)
	up.Append(payload)
	if !b.sendInternal(up, answer) {
		answer(nil)
		return
	}
	time.AfterFunc(adminListWait, func() { b.post(func() { answer(nil) }) })
}

// adminCommandInfo answers disco#info on a command node (XEP-0050 §2.3).
func (b *Bouncer) adminCommandInfo(s *sessions.Session, el, payload *stanza.Element) {
	c := findAdminCommand(payload.Get("node"))
	if c == nil {
		b.sendTo(s, errorFromServer(el, s, b.domain, stanza.ErrCancel, "item-not-found", "no such bouncer command"))
		return
	}
	q := stanza.New(stanza.NSDiscoInfo, "query", "node", c.node)
	q.Append(stanza.New(stanza.NSDiscoInfo, "identity", "category", "automation", "type", "command-node", "name", c.name))
	q.Append(stanza.New(stanza.NSDiscoInfo, "feature", "var", NSCommands))
	q.Append(stanza.New(stanza.NSDiscoInfo, "feature", "var", stanza.NSDataForm))
	b.sendTo(s, localResult(el, s, b.domain).Append(q))
}

// adminExecute runs one step of a command (XEP-0050 §3).
func (b *Bouncer) adminExecute(s *sessions.Session, el, cmd *stanza.Element) {
	c := findAdminCommand(cmd.Get("node"))
	if c == nil {
		b.sendTo(s, errorFromServer(el, s, b.domain, stanza.ErrCancel, "item-not-found", "no such bouncer command"))
		return
	}
	b.adminExpire(time.Now())
	call := &adminCall{s: s, iq: el, node: c.node, action: cmd.Get("action"), sessionID: cmd.Get("sessionid")}
	if call.action == "" {
		call.action = "execute"
	}
	if call.sessionID != "" {
		call.continued = true
		as := b.admin.sessions[call.sessionID]
		if as == nil || as.node != c.node || as.client != s.ID {
			// XEP-0050 §4.6: an unknown or expired session.
			e := errorFromServer(el, s, b.domain, stanza.ErrModify, "bad-request", "this command session has expired; start the command again")
			e.Child(stanza.NSClient, "error").Append(stanza.New(NSCommands, "bad-sessionid"))
			b.sendTo(s, e)
			return
		}
	} else {
		call.sessionID = newSessionID()
	}
	if call.action == "cancel" {
		delete(b.admin.sessions, call.sessionID)
		b.adminReply(call, "canceled", nil)
		return
	}
	if x := cmd.Child(stanza.NSDataForm, "x"); x != nil && (x.Get("type") == "submit" || x.Get("type") == "") {
		call.form = parseForm(x)
	}
	if call.action == "prev" {
		call.form, call.continued = nil, false // back to the first step
	}
	c.run(b, call)
}

// adminExpire forgets command sessions nobody finished.
func (b *Bouncer) adminExpire(now time.Time) {
	for id, as := range b.admin.sessions {
		if now.After(as.deadline) {
			delete(b.admin.sessions, id)
		}
	}
}

func newSessionID() string {
	var r [8]byte
	_, _ = rand.Read(r[:])
	return hex.EncodeToString(r[:])
}

// adminForm asks the client to fill in form: the command stays open and
// its session remembered.
func (b *Bouncer) adminForm(c *adminCall, form *stanza.Element, notes ...adminNote) {
	b.admin.sessions[c.sessionID] = &adminSession{node: c.node, client: c.s.ID, deadline: time.Now().Add(adminSessionTTL)}
	b.adminReply(c, "executing", form, notes...)
}

// adminDone completes the command with an optional result form and notes.
func (b *Bouncer) adminDone(c *adminCall, form *stanza.Element, notes ...adminNote) {
	delete(b.admin.sessions, c.sessionID)
	b.adminReply(c, "completed", form, notes...)
}

// adminNote is an XEP-0050 §3.5 note: type info, warn or error.
type adminNote struct{ typ, text string }

func info(text string) adminNote  { return adminNote{"info", text} }
func warn(text string) adminNote  { return adminNote{"warn", text} }
func fault(text string) adminNote { return adminNote{"error", text} }

func (b *Bouncer) adminReply(c *adminCall, status string, form *stanza.Element, notes ...adminNote) {
	s := b.reg.ByID(c.s.ID)
	if s == nil {
		return // the client left while the command ran
	}
	cmd := stanza.New(NSCommands, "command", "node", c.node, "sessionid", c.sessionID, "status", status)
	if status == "executing" {
		// XEP-0050 §3.4: one step left, so complete is the default action.
		cmd.Append(stanza.New(NSCommands, "actions", "execute", "complete").Append(stanza.New(NSCommands, "complete")))
	}
	for _, n := range notes {
		cmd.Append(stanza.New(NSCommands, "note", "type", n.typ).AppendText(n.text))
	}
	if form != nil {
		cmd.Append(form)
	}
	b.sendTo(s, localResult(c.iq, s, b.domain).Append(cmd))
}

// later runs work off the loop (it may wait on disk) and then done on the
// loop with its result, as the rule for blocking work asks (post, in
// offloop.go, drops done once the loop has stopped).
func later[T any](b *Bouncer, work func() T, done func(T)) {
	go func() {
		v := work()
		b.post(func() { done(v) })
	}()
}

// --- XEP-0004 data forms ---
//
// Forms are built for the clients that show them: every field has a var
// of its own, fixed lines included (slixmpp and poezio keep fields by
// var), and no option has an empty value (Profanity crashes on one).
// TestAdminFormsEveryClientCanRead walks every command's every step.

// parseForm returns a submitted form's values by field var.
func parseForm(x *stanza.Element) map[string][]string {
	out := map[string][]string{}
	for _, f := range x.ChildrenNamed(stanza.NSDataForm, "field") {
		var vs []string
		for _, v := range f.ChildrenNamed(stanza.NSDataForm, "value") {
			vs = append(vs, v.Text())
		}
		out[f.Get("var")] = vs
	}
	return out
}

// dataForm builds <x xmlns='jabber:x:data'/> of type typ (form or result).
func dataForm(typ, title, instructions string) *stanza.Element {
	x := stanza.New(stanza.NSDataForm, "x", "type", typ)
	if title != "" {
		x.Append(stanza.New(stanza.NSDataForm, "title").AppendText(title))
	}
	if instructions != "" {
		x.Append(stanza.New(stanza.NSDataForm, "instructions").AppendText(instructions))
	}
	return x
}

// field appends a field with its values and returns it, for options.
func field(x *stanza.Element, typ, v, label string, values ...string) *stanza.Element {
	f := stanza.New(stanza.NSDataForm, "field", "type", typ, "var", v, "label", label)
	for _, val := range values {
		f.Append(stanza.New(stanza.NSDataForm, "value").AppendText(val))
	}
	x.Append(f)
	return f
}

// option adds a list-single/list-multi option. Its value is never empty:
// Profanity passes an option's missing value on as NULL and crashes, so
// an option without one is left out.
func option(f *stanza.Element, label, value string) {
	if value == "" {
		return
	}
	f.Append(stanza.New(stanza.NSDataForm, "option", "label", label).Append(stanza.New(stanza.NSDataForm, "value").AppendText(value)))
}

// required marks a field as required.
func required(f *stanza.Element) *stanza.Element {
	return f.Append(stanza.New(stanza.NSDataForm, "required"))
}

// fixed appends a display-only line. It has its own var like any field
// (XEP-0004 makes it optional): slixmpp, and so poezio, keeps a form's
// fields by var, and lines without one overwrite each other.
func fixed(x *stanza.Element, v, text string) {
	x.Append(stanza.New(stanza.NSDataForm, "field", "type", "fixed", "var", v).Append(stanza.New(stanza.NSDataForm, "value").AppendText(text)))
}

// fixedLines appends lines as fixed fields prefix-1, prefix-2, ….
func fixedLines(x *stanza.Element, prefix string, lines []string) {
	for i, l := range lines {
		fixed(x, prefix+"-"+strconv.Itoa(i+1), l)
	}
}

// boolValue reads an XEP-0004 boolean ("1" or "true" is true).
func boolValue(v string) bool { return v == "1" || v == "true" }

// plural is "1 room", "2 rooms".
func plural(n int64, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.FormatInt(n, 10) + " " + many
}

// sortedRooms returns the rooms by JID, for stable listings.
func (b *Bouncer) sortedRooms() []*Room {
	out := make([]*Room, 0, len(b.rooms))
	for _, r := range b.rooms {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].JID < out[j].JID })
	return out
}
