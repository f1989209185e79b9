package bouncer

// XEP-0357 push, done by the bouncer for its local clients.
//
// The server never pushes for the account, because the bouncer's upstream
// resource never goes away. So the bouncer answers <enable/> and
// <disable/> itself, keeps each client's registration (in SQLite, loaded
// once at startup), and publishes a notification to the client's app
// server through the upstream session when a message that would wake a
// phone arrives while that client is hibernated or gone. The rules follow
// Prosody's mod_cloud_notify unless a comment says otherwise.

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"mellium.im/xmpp/form"
	"mellium.im/xmpp/jid"

	"xmppbouncer/config"
	"xmppbouncer/sessions"
	"xmppbouncer/stanza"
	"xmppbouncer/store"
)

// pushKind says why a message may wake a phone.
type pushKind int

const (
	// pushDirect is a chat or normal message addressed to the account.
	pushDirect pushKind = iota
	// pushRoomPM is a private message from a room occupant (XEP-0045 §7.5).
	pushRoomPM
	// pushRoomMessage is a groupchat message in a room the account is in;
	// only one that mentions the account's nick wakes a phone.
	pushRoomMessage
)

const (
	// defaultPushInterval is the least time between two notifications to
	// one registration, unless [push] min_interval says otherwise.
	defaultPushInterval = 10 * time.Second
	// pushMaxErrors is how many errors in a row (other than type wait) an
	// app server may answer before its registration is dropped; it is
	// mod_cloud_notify's push_max_errors default.
	pushMaxErrors = 16
	// pushFormType is the FORM_TYPE of the notification summary (XEP-0357 §7).
	pushFormType = "urn:xmpp:push:summary"
)

// pusher owns XEP-0357 for the local clients: each client's registration,
// what it has missed, and when its next notification may go out. It
// belongs to the loop, and reaches the rest of the core only through
// pushDeps (wired in wiring.go).
type pusher struct {
	pushDeps
	regs map[string]*pushReg // client resource → registration
}

// pushDeps is all push needs from the rest of the core.
type pushDeps struct {
	account, domain string // the account's bare JID and its server
	cfg             *config.Push
	log             *slog.Logger
	// sessions tells which clients are connected, hibernated or gone, and
	// which rooms a hibernated one is in.
	sessions pushSessions
	// roomNick is the account's nick in room, "" if it is not in it.
	roomNick func(room string) string
	// reply sends el to a local session.
	reply func(s *sessions.Session, el *stanza.Element)
	// sendUp sends the core's own IQ upstream and calls answer with the
	// reply (or a stand-in error of type wait when the upstream session
	// ends or the IQ times out); false if upstream is down.
	sendUp func(iq *stanza.Element, answer func(*stanza.Element)) bool
	// store queues a write to the archive, in order with the others and
	// retried until it succeeds; nothing when there is no archive.
	store func(func(ctx context.Context, db Store) error)
	// load reads the stored registrations; nil when there is no archive.
	load func() ([]store.PushRegistration, error)
}

// pushSessions is what push reads of the session registry.
type pushSessions interface {
	ByResource(res string) *sessions.Session
	ClaimOf(room string, s *sessions.Session) *sessions.Claim
}

func newPusher(d pushDeps) *pusher {
	return &pusher{pushDeps: d, regs: map[string]*pushReg{}}
}

// pushReg is one client's registration and what it has missed.
type pushReg struct {
	store.PushRegistration
	form *stanza.Element // the parsed publish-options form, nil if none

	count   int       // messages since the client was last connected
	sender  string    // last-message-sender
	body    string    // last-message-body
	pending bool      // a notification is due once the rate limit allows
	last    time.Time // when the last notification went out
	errors  int       // errors in a row from the app server (not type wait)
}

// awake forgets what the client missed: it is connected again.
func (r *pushReg) awake() {
	r.count, r.sender, r.body, r.pending = 0, "", "", false
}

func (p *pusher) interval() time.Duration {
	if d := p.cfg.MinInterval.Duration; d > 0 {
		return d
	}
	return defaultPushInterval
}

// startup loads the stored registrations, once, when the loop starts.
func (p *pusher) startup() {
	if p.load == nil {
		return
	}
	regs, err := p.load()
	if err != nil {
		p.log.Error("loading push registrations failed; push is off until they are enabled again", "err", err)
		return
	}
	for _, r := range regs {
		pr := &pushReg{PushRegistration: r}
		if r.Form != "" {
			form, err := stanza.Parse(r.Form)
			if err != nil {
				p.log.Warn("stored push publish-options unreadable; publishing without them", "resource", r.Resource, "err", err)
			}
			pr.form = form
		}
		p.regs[r.Resource] = pr
	}
	if len(regs) > 0 {
		p.log.Info("push registrations loaded", "count", len(regs))
	}
}

// clientBound: a client that connects has seen what it missed.
func (p *pusher) clientBound(s *sessions.Session) {
	if r := p.regs[s.JID.Resourcepart()]; r != nil {
		r.awake()
	}
}

// control answers a client's <enable/> or <disable/> (XEP-0357 §5, §6)
// addressed to its account or server, a rule of the routing table
// (routes.go): errPass when it is none of those.
func (p *pusher) control(s *sessions.Session, t target, el, payload *stanza.Element) error {
	if payload == nil || payload.Name.Space != stanza.NSPush || el.Type() != "set" {
		return errPass
	}
	if t.to != "" && t.to != p.account && t.to != p.domain {
		return errPass
	}
	switch payload.Name.Local {
	case "enable":
		return p.enable(s, el, payload)
	case "disable":
		return p.disable(s, el, payload)
	default:
		return refusal(stanza.ErrModify, "bad-request", "expected <enable/> or <disable/>")
	}
}

// service validates the jid attribute of <enable/> or <disable/>. On a
// bad one it returns the error to answer with.
func (p *pusher) service(payload *stanza.Element) (string, error) {
	raw := payload.Get("jid")
	if raw == "" {
		return "", refusal(stanza.ErrModify, "bad-request", "missing jid of the push service")
	}
	j, err := jid.Parse(raw)
	if err != nil {
		return "", refusal(stanza.ErrModify, "jid-malformed", "not a valid JID: "+raw)
	}
	return j.String(), nil
}

func (p *pusher) enable(s *sessions.Session, el, payload *stanza.Element) error {
	service, err := p.service(payload)
	if err != nil {
		return err
	}
	if bare, _ := splitJID(service); bare == p.account {
		// As mod_cloud_notify: the account cannot be its own app server.
		return refusal(stanza.ErrModify, "bad-request", "the push service must not be the account itself")
	}
	node := payload.Get("node")
	if node == "" {
		// XEP-0357 §5 says SHOULD; every app server we know of needs it.
		return refusal(stanza.ErrModify, "bad-request", "missing node")
	}
	r := &pushReg{PushRegistration: store.PushRegistration{
		Resource: s.JID.Resourcepart(), Service: service, Node: node, Created: time.Now().UTC(),
	}}
	if form := payload.Child(stanza.NSDataForm, "x"); form != nil {
		r.form = form.DeepCopy()
		r.Form = r.form.String()
	}
	// Stored by the archiver, in order with any later disable; it retries
	// until the write succeeds, so the loop never waits on the disk.
	reg := r.PushRegistration
	p.store(func(ctx context.Context, db Store) error { return db.SetPushRegistration(ctx, reg) })
	for _, o := range p.regs {
		// One device, one registration: a client that binds a new resource
		// each time enables the same node again (mod_cloud_notify keys its
		// registrations by jid and node the same way).
		if o.Service == service && o.Node == node && o.Resource != r.Resource {
			p.forget(o)
		}
	}
	p.regs[r.Resource] = r
	p.log.Info("push enabled", "jid", s.JID.String(), "service", service)
	p.reply(s, localResult(el, s, p.domain))
	return nil
}

// disable removes every registration of the account for the service (and
// node, if given), whichever client made it (XEP-0357 §6).
func (p *pusher) disable(s *sessions.Session, el, payload *stanza.Element) error {
	service, err := p.service(payload)
	if err != nil {
		return err
	}
	node := payload.Get("node")
	for _, r := range p.regs {
		if r.Service == service && (node == "" || r.Node == node) {
			p.forget(r)
			p.log.Info("push disabled", "resource", r.Resource, "service", service, "by", s.JID.String())
		}
	}
	p.reply(s, localResult(el, s, p.domain))
	return nil
}

// forget drops r from memory and (through the archiver) from SQLite.
func (p *pusher) forget(r *pushReg) {
	res, svc, node := r.Resource, r.Service, r.Node
	p.store(func(ctx context.Context, db Store) error {
		_, err := db.DeletePushRegistration(ctx, res, svc, node)
		return err
	})
	if p.regs[r.Resource] == r {
		delete(p.regs, r.Resource)
	}
}

// onMessage is the delivery path's entry point: el has arrived for the
// account, and each client that is hibernated or gone and has push enabled
// gets a notification if el would wake a phone (rate-limited per
// registration).
func (p *pusher) onMessage(el *stanza.Element, kind pushKind) {
	if len(p.regs) == 0 {
		return
	}
	sender, room, ok := p.wakes(el, kind)
	if !ok {
		return
	}
	body := el.ChildText(stanza.NSClient, "body")
	now := time.Now()
	for res, r := range p.regs {
		s := p.sessions.ByResource(res)
		if s != nil && !s.Hibernated {
			r.awake() // connected and reachable: it gets el itself
			continue
		}
		if s != nil && room != "" && p.sessions.ClaimOf(room, s) == nil {
			continue // hibernated, and el is not for it: it is not in the room
		}
		r.count++
		r.sender, r.body, r.pending = sender, body, true
		p.maybeSend(r, now)
	}
}

// wakes reports whether el would wake a phone, and with which sender
// (XEP-0357 last-message-sender) and room (for room messages).
func (p *pusher) wakes(el *stanza.Element, kind pushKind) (sender, room string, ok bool) {
	if strings.TrimSpace(el.ChildText(stanza.NSClient, "body")) == "" {
		return "", "", false // as mod_cloud_notify: no body, nothing to read
	}
	typ := el.Type()
	fromBare, nick := splitJID(el.From())
	switch kind {
	case pushDirect:
		if (typ != "chat" && typ != "normal" && typ != "") || fromBare == p.account {
			return "", "", false
		}
		return fromBare, "", true
	case pushRoomPM:
		if (typ != "chat" && typ != "normal" && typ != "") || nick == "" {
			return "", "", false
		}
		return el.From(), fromBare, true
	case pushRoomMessage:
		own := p.roomNick(fromBare)
		if typ != "groupchat" || own == "" || nick == "" || nick == own || isSubject(el) {
			return "", "", false
		}
		if !mentions(el.ChildText(stanza.NSClient, "body"), own) {
			return "", "", false
		}
		return el.From(), fromBare, true
	}
	return "", "", false
}

// mentions reports whether body names nick as a word of its own, ignoring
// case, the way mod_csi_muc_priorities and clients highlight a mention.
func mentions(body, nick string) bool {
	lb, ln := strings.ToLower(body), strings.ToLower(nick)
	if ln == "" {
		return false
	}
	for i := 0; i <= len(lb)-len(ln); {
		j := strings.Index(lb[i:], ln)
		if j < 0 {
			return false
		}
		start, end := i+j, i+j+len(ln)
		before, _ := utf8.DecodeLastRuneInString(lb[:start])
		after, _ := utf8.DecodeRuneInString(lb[end:])
		if (start == 0 || !isWordRune(before)) && (end == len(lb) || !isWordRune(after)) {
			return true
		}
		_, w := utf8.DecodeRuneInString(lb[start:])
		i = start + w
	}
	return false
}

func isWordRune(r rune) bool { return unicode.IsLetter(r) || unicode.IsDigit(r) || r == '_' }

// tick runs with the IQ sweep: it sends the trailing notification of each
// registration whose rate-limit window has ended, and notices clients that
// came back (a resumed XEP-0198 session binds nothing new).
func (p *pusher) tick(now time.Time) {
	for res, r := range p.regs {
		if s := p.sessions.ByResource(res); s != nil && !s.Hibernated {
			r.awake()
			continue
		}
		p.maybeSend(r, now)
	}
}

// maybeSend publishes r's pending notification unless one went out less
// than the rate-limit interval ago; tick sends it later then.
func (p *pusher) maybeSend(r *pushReg, now time.Time) {
	if !r.pending || (!r.last.IsZero() && now.Sub(r.last) < p.interval()) {
		return
	}
	if !p.sendUp(p.publish(r), func(ans *stanza.Element) { p.answer(r, ans) }) {
		return // upstream is down: still pending, tried again on a later tick
	}
	r.pending = false
	r.last = now
}

// publish builds the notification (XEP-0357 §7): the summary form, and
// the client's publish-options, which carry the app server's secret.
func (p *pusher) publish(r *pushReg) *stanza.Element {
	fields := []form.Field{
		form.Hidden("FORM_TYPE", form.Value(pushFormType)),
		form.Text("message-count", form.Value(strconv.Itoa(r.count))),
	}
	if r.sender != "" {
		fields = append(fields, form.Text("last-message-sender", form.Value(r.sender)))
	}
	if r.body != "" && p.cfg.IncludeBody {
		fields = append(fields, form.Text("last-message-body", form.Value(r.body)))
	}
	summary, _ := form.New(fields...).Submit()
	item := stanza.New(stanza.NSPubSub, "item").Append(stanza.New(stanza.NSPush, "notification").Append(stanza.MustFromTokens(summary, stanza.NSPush)))
	pubsub := stanza.New(stanza.NSPubSub, "pubsub").Append(stanza.New(stanza.NSPubSub, "publish", "node", r.Node).Append(item))
	if r.form != nil {
		pubsub.Append(stanza.New(stanza.NSPubSub, "publish-options").Append(r.form))
	}
	return stanza.New(stanza.NSClient, "iq", "type", "set", "to", r.Service).Append(pubsub)
}

// pushGone lists the app server errors that mean the registration no
// longer exists there, so it is dropped at once. p2 answers item-not-found
// for an unknown node or device and forbidden for a wrong secret (or a
// publisher that is not a bare JID); mod_push_appserver answers
// item-not-found for an unknown node or secret. Any other error type but
// wait counts towards pushMaxErrors, as in mod_cloud_notify.
var pushGone = map[string]bool{"item-not-found": true, "forbidden": true, "not-authorized": true}

// answer handles the app server's answer to a notification.
func (p *pusher) answer(r *pushReg, ans *stanza.Element) {
	if p.regs[r.Resource] != r {
		return // disabled or replaced meanwhile
	}
	if ans.Type() == "result" {
		r.errors = 0
		return
	}
	e := ans.Child(stanza.NSClient, "error")
	if e == nil {
		// The upstream session ended before an answer: send it again.
		r.pending = true
		return
	}
	if from := normJID(ans.From()); from != "" && from != r.Service {
		p.log.Debug("push error from an unexpected sender ignored", "from", from, "service", r.Service)
		return
	}
	cond := stanza.ErrorCondition(ans)
	switch {
	case pushGone[cond]:
	case e.Get("type") == stanza.ErrWait:
		// As mod_cloud_notify: a temporary condition never counts.
		return
	default:
		r.errors++
		if r.errors < pushMaxErrors {
			p.log.Info("push app server answered an error", "resource", r.Resource, "service", r.Service, "condition", cond, "in_a_row", r.errors)
			return
		}
	}
	p.forget(r)
	args := []any{"resource", r.Resource, "service", r.Service, "condition", cond}
	if cond == "forbidden" {
		// p2 (Conversations) refuses every publish whose sender is not a
		// bare JID, and the bouncer can only publish from its full JID.
		args = append(args, "hint", "this app server may accept notifications only from a server's bare JID; see README, Push notifications")
	}
	p.log.Warn("push registration dropped: the app server refused a notification", args...)
}

// disco completes a disco#info answer from the account (bare JID) or its
// server: the bouncer does push, so urn:xmpp:push:0 is there whatever
// upstream says (XEP-0357 §4). Answers from anyone else pass unchanged.
func (p *pusher) disco(to string, el *stanza.Element) *stanza.Element {
	if to = normJID(to); to != "" && to != p.account && to != p.domain {
		return el
	}
	return withDiscoFeature(el, stanza.NSPush)
}
