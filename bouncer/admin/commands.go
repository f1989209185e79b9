package admin

// The commands are listed next to the server's own: a client's disco#items
// for the node http://jabber.org/protocol/commands on the account's domain
// goes upstream as usual and the bouncer adds its entries to the answer
// (XEP-0050 §2.2). Only local clients reach them; an IQ from upstream to
// one of these nodes is refused with forbidden.

import (
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"strings"
	"sync"
	"time"

	adhoc "mellium.im/xmpp/commands"

	"xmppbouncer/stanza"
)

// NSCommands is XEP-0050's namespace, also the disco node that lists
// commands.
const NSCommands = adhoc.NS

// NodePrefix starts the node of every bouncer command; a command IQ with
// another node is the server's and goes upstream.
const NodePrefix = "urn:xmppbouncer:command:"

// Command nodes.
const (
	NodeStatus     = NodePrefix + "status"
	NodeClients    = NodePrefix + "clients"
	NodeRooms      = NodePrefix + "rooms"
	NodeHistory    = NodePrefix + "history"
	NodeReconnect  = NodePrefix + "reconnect"
	NodeFastTokens = NodePrefix + "fast-tokens"
)

// command is one command the bouncer offers.
type command struct {
	node, name string
	run        func(a *Commands, c *call)
}

// commands lists the commands in the order clients show them.
func commands() []command {
	return []command{
		{NodeStatus, "Bouncer: status", (*Commands).status},
		{NodeClients, "Bouncer: local clients (list, disconnect)", (*Commands).clients},
		{NodeRooms, "Bouncer: rooms (list, join, keep, leave)", (*Commands).rooms},
		{NodeHistory, "Bouncer: history (retention, prune, export)", (*Commands).history},
		{NodeReconnect, "Bouncer: reconnect upstream", (*Commands).reconnect},
		{NodeFastTokens, "Bouncer: FAST login tokens (list, revoke a device)", (*Commands).fastTokens},
	}
}

// Nodes are the command nodes in the order clients show them.
func Nodes() []string {
	var out []string
	for _, c := range commands() {
		out = append(out, c.node)
	}
	return out
}

func findCommand(node string) *command {
	for _, c := range commands() {
		if c.node == node {
			return &c
		}
	}
	return nil
}

// Options are the settings the commands work with.
type Options struct {
	Domain      string // the account's domain, where the commands live
	DefaultNick string // the nick a room is joined with when none is given
	Version     string
	DBTimeout   time.Duration
	Log         *slog.Logger
	Store       Store     // nil without an archive
	Fast        FastStore // nil when FAST tokens are not stored
}

// Commands answers the bouncer's XEP-0050 commands. Its state belongs to
// the core's loop.
type Commands struct {
	core    Core
	opt     Options
	started time.Time

	sessions map[string]*session // XEP-0050 sessionid → multi-step command; expired by Sweep

	kept       []keptRoom // rooms kept by the rooms command, mirrored in Store
	keptSeq    uint64     // version of kept, so that writes land in order
	keptWriter keptWriter
}

// session is one multi-step command in progress (XEP-0050 §3.4).
type session struct {
	node     string
	client   uint64 // the session that started it; nobody else may continue it
	deadline time.Time
}

// sessionTTL bounds how long a half-filled form is remembered.
const sessionTTL = 10 * time.Minute

// New returns the commands, talking to core.
func New(core Core, opt Options) *Commands {
	if opt.Log == nil {
		opt.Log = slog.Default()
	}
	return &Commands{core: core, opt: opt, started: time.Now(), sessions: map[string]*session{}}
}

// Caller is the local client that sent a command IQ.
type Caller struct {
	ID       uint64
	JID      string // its full JID
	Resource string
}

// call is one command IQ from a local client.
type call struct {
	from      Caller
	iq        *stanza.Element
	node      string
	action    string // execute, next, prev, complete, cancel
	sessionID string
	continued bool                // the IQ named a session: not the first step
	form      map[string][]string // the submitted data form; nil on the first step
}

// value returns the first submitted value of a field, trimmed.
func (c *call) value(field string) string {
	if v := c.form[field]; len(v) > 0 {
		return strings.TrimSpace(v[0])
	}
	return ""
}

// LocalIQ answers a local client's IQ (addressed to to) that concerns the
// bouncer's commands. It reports whether it answered.
func (a *Commands) LocalIQ(from Caller, to string, el, payload *stanza.Element) bool {
	if to != "" && to != a.opt.Domain {
		return false
	}
	switch {
	case el.Type() == "get" && payload.Is(stanza.NSDiscoItems, "query") && payload.Get("node") == NSCommands:
		a.listCommands(from, el, payload)
		return true
	case el.Type() == "get" && payload.Is(stanza.NSDiscoInfo, "query") && strings.HasPrefix(payload.Get("node"), NodePrefix):
		a.commandInfo(from, el, payload)
		return true
	case el.Type() == "set" && payload.Is(NSCommands, "command") && strings.HasPrefix(payload.Get("node"), NodePrefix):
		a.execute(from, el, payload)
		return true
	}
	return false
}

// FromUpstream refuses command IQs from upstream to the bouncer's nodes:
// only the account's local clients may run them. It reports whether it
// answered.
func (a *Commands) FromUpstream(el, payload *stanza.Element) bool {
	node := ""
	switch {
	case payload.Is(NSCommands, "command"):
		node = payload.Get("node")
	case payload.Is(stanza.NSDiscoInfo, "query"):
		node = payload.Get("node")
	}
	if !strings.HasPrefix(node, NodePrefix) {
		return false
	}
	a.opt.Log.Warn("refused a bouncer command from upstream", "from", el.From(), "node", node)
	r := stanza.ErrorReply(el, stanza.ErrAuth, "forbidden", "")
	r.Set("from", "")
	a.core.SendUp(r)
	return true
}

// Sweep forgets command sessions nobody finished; the core's sweep calls
// it.
func (a *Commands) Sweep(now time.Time) {
	for id, s := range a.sessions {
		if now.After(s.deadline) {
			delete(a.sessions, id)
		}
	}
}

// SessionDeadline is when an open command session expires; for tests and
// introspection.
func (a *Commands) SessionDeadline(id string) (time.Time, bool) {
	s := a.sessions[id]
	if s == nil {
		return time.Time{}, false
	}
	return s.deadline, true
}

// SetSessionDeadline moves an open command session's deadline; for tests.
func (a *Commands) SetSessionDeadline(id string, t time.Time) {
	if s := a.sessions[id]; s != nil {
		s.deadline = t
	}
}

// items are the disco#items entries of the bouncer's commands.
func (a *Commands) items() []*stanza.Element {
	var out []*stanza.Element
	for _, c := range commands() {
		out = append(out, stanza.New(stanza.NSDiscoItems, "item", "jid", a.opt.Domain, "node", c.node, "name", c.name))
	}
	return out
}

// listWait bounds how long the merged command list waits for the server's
// part before it answers with the bouncer's alone.
const listWait = 10 * time.Second

// listCommands asks upstream for the server's commands and answers the
// client with those plus the bouncer's; with upstream down or failing it
// answers with the bouncer's alone.
func (a *Commands) listCommands(from Caller, el, payload *stanza.Element) {
	answered := false
	answer := func(server *stanza.Element) {
		if answered {
			return
		}
		answered = true
		q := stanza.New(stanza.NSDiscoItems, "query", "node", NSCommands)
		if server != nil && server.Type() == "result" {
			for _, it := range server.Child(stanza.NSDiscoItems, "query").ChildrenNamed(stanza.NSDiscoItems, "item") {
				q.Append(it)
			}
		}
		q.Append(a.items()...)
		a.core.Send(from.ID, a.result(el, from).Append(q))
	}
	up := stanza.New(stanza.NSClient, "iq", "type", "get", "to", a.opt.Domain)
	up.Append(payload)
	if !a.core.AskUpstream(up, answer) {
		answer(nil)
		return
	}
	time.AfterFunc(listWait, func() { a.core.Post(func() { answer(nil) }) })
}

// commandInfo answers disco#info on a command node (XEP-0050 §2.3).
func (a *Commands) commandInfo(from Caller, el, payload *stanza.Element) {
	c := findCommand(payload.Get("node"))
	if c == nil {
		a.core.Send(from.ID, a.errorReply(el, from, stanza.ErrCancel, "item-not-found", "no such bouncer command"))
		return
	}
	q := stanza.New(stanza.NSDiscoInfo, "query", "node", c.node)
	q.Append(stanza.New(stanza.NSDiscoInfo, "identity", "category", "automation", "type", "command-node", "name", c.name))
	q.Append(stanza.New(stanza.NSDiscoInfo, "feature", "var", NSCommands))
	q.Append(stanza.New(stanza.NSDiscoInfo, "feature", "var", stanza.NSDataForm))
	a.core.Send(from.ID, a.result(el, from).Append(q))
}

// execute runs one step of a command (XEP-0050 §3).
func (a *Commands) execute(from Caller, el, cmd *stanza.Element) {
	c := findCommand(cmd.Get("node"))
	if c == nil {
		a.core.Send(from.ID, a.errorReply(el, from, stanza.ErrCancel, "item-not-found", "no such bouncer command"))
		return
	}
	a.Sweep(time.Now())
	cl := &call{from: from, iq: el, node: c.node, action: cmd.Get("action"), sessionID: cmd.Get("sessionid")}
	if cl.action == "" {
		cl.action = "execute"
	}
	if cl.sessionID != "" {
		cl.continued = true
		s := a.sessions[cl.sessionID]
		if s == nil || s.node != c.node || s.client != from.ID {
			// XEP-0050 §4.6: an unknown or expired session.
			e := a.errorReply(el, from, stanza.ErrModify, "bad-request", "this command session has expired; start the command again")
			e.Child(stanza.NSClient, "error").Append(stanza.New(NSCommands, "bad-sessionid"))
			a.core.Send(from.ID, e)
			return
		}
	} else {
		cl.sessionID = newSessionID()
	}
	if cl.action == "cancel" {
		delete(a.sessions, cl.sessionID)
		a.reply(cl, "canceled", nil)
		return
	}
	if x := cmd.Child(stanza.NSDataForm, "x"); x != nil && (x.Get("type") == "submit" || x.Get("type") == "") {
		cl.form = parseForm(x)
	}
	if cl.action == "prev" {
		cl.form, cl.continued = nil, false // back to the first step
	}
	c.run(a, cl)
}

func newSessionID() string {
	var r [8]byte
	_, _ = rand.Read(r[:])
	return hex.EncodeToString(r[:])
}

// askForm asks the client to fill in form: the command stays open and its
// session remembered.
func (a *Commands) askForm(c *call, form *stanza.Element, notes ...adhoc.Note) {
	a.sessions[c.sessionID] = &session{node: c.node, client: c.from.ID, deadline: time.Now().Add(sessionTTL)}
	a.reply(c, "executing", form, notes...)
}

// done completes the command with an optional result form and notes.
func (a *Commands) done(c *call, form *stanza.Element, notes ...adhoc.Note) {
	delete(a.sessions, c.sessionID)
	a.reply(c, "completed", form, notes...)
}

// The XEP-0050 §3.5 notes: type info, warn or error.
func info(text string) adhoc.Note  { return adhoc.Note{Type: adhoc.NoteInfo, Value: text} }
func warn(text string) adhoc.Note  { return adhoc.Note{Type: adhoc.NoteWarn, Value: text} }
func fault(text string) adhoc.Note { return adhoc.Note{Type: adhoc.NoteError, Value: text} }

func (a *Commands) reply(c *call, status string, form *stanza.Element, notes ...adhoc.Note) {
	cmd := stanza.New(NSCommands, "command", "node", c.node, "sessionid", c.sessionID, "status", status)
	if status == "executing" {
		// XEP-0050 §3.4: one step left, so complete is the default action.
		// (mellium keeps the default action in the bits above the allowed ones.)
		cmd.Append(stanza.MustFromTokens((adhoc.Complete<<3 | adhoc.Complete).TokenReader(), NSCommands))
	}
	for _, n := range notes {
		cmd.Append(stanza.MustFromTokens(n.TokenReader(), NSCommands))
	}
	if form != nil {
		cmd.Append(form)
	}
	// A client that left while the command ran gets nothing.
	a.core.Send(c.from.ID, a.result(c.iq, c.from).Append(cmd))
}

// result is the empty result to a client's IQ, from where it was sent.
func (a *Commands) result(req *stanza.Element, to Caller) *stanza.Element {
	from := req.To()
	if from == "" {
		from = a.opt.Domain
	}
	return stanza.New(stanza.NSClient, "iq", "type", "result", "id", req.ID(), "from", from, "to", to.JID)
}

// errorReply is an error answer to a client's IQ, from where it was sent.
func (a *Commands) errorReply(req *stanza.Element, to Caller, typ, cond, text string) *stanza.Element {
	from := req.To()
	if from == "" {
		from = a.opt.Domain
	}
	r := stanza.ErrorReply(req, typ, cond, text)
	r.Set("from", from)
	r.Set("to", to.JID)
	return r
}

// later runs work off the loop (it may wait on disk) and then then on the
// loop with its result (Post drops it once the loop has stopped).
func later[T any](a *Commands, work func() T, then func(T)) {
	go func() {
		v := work()
		a.core.Post(func() { then(v) })
	}()
}

// keptWriter serialises the writes of the kept-room list so that an older
// list never overwrites a newer one. It guards disk writes only.
type keptWriter struct {
	mu      sync.Mutex
	written uint64
}
