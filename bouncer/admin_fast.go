package bouncer

// The FAST tokens command (XEP-0484): list the devices that can log in
// with a token, and revoke one, e.g. a lost phone, from another client.
// Also the adapter that lets the listener keep its tokens in SQLite.

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"xmppbouncer/listener"
	"xmppbouncer/sessions"
	"xmppbouncer/sqlite"
	"xmppbouncer/stanza"
)

// AdminNodeFastTokens is the FAST tokens command's node.
const AdminNodeFastTokens = adminNodePrefix + "fast-tokens"

// FastTokenDB is what the FAST token store needs from the database
// (sqlite.DB has it).
type FastTokenDB interface {
	FastTokens(ctx context.Context, userAgent string) ([]sqlite.FastToken, error)
	AddFastToken(ctx context.Context, t sqlite.FastToken) error
	UseFastToken(ctx context.Context, hash []byte, count uint64, at time.Time) (bool, error)
	DeleteFastToken(ctx context.Context, hash []byte) (bool, error)
	DeleteFastTokens(ctx context.Context, userAgent string) (int64, error)
	DeleteExpiredFastTokens(ctx context.Context, now time.Time) (int64, error)
}

// FastTokenStore adapts db to the listener's token store.
func FastTokenStore(db FastTokenDB) listener.FastTokenStore { return fastStore{db} }

type fastStore struct{ db FastTokenDB }

func (f fastStore) FastTokens(ctx context.Context, ua string) ([]listener.FastToken, error) {
	ts, err := f.db.FastTokens(ctx, ua)
	out := make([]listener.FastToken, len(ts))
	for i, t := range ts {
		out[i] = listener.FastToken(t)
	}
	return out, err
}

func (f fastStore) AddFastToken(ctx context.Context, t listener.FastToken) error {
	return f.db.AddFastToken(ctx, sqlite.FastToken(t))
}

func (f fastStore) UseFastToken(ctx context.Context, hash []byte, count uint64, at time.Time) (bool, error) {
	return f.db.UseFastToken(ctx, hash, count, at)
}

func (f fastStore) DeleteFastToken(ctx context.Context, hash []byte) (bool, error) {
	return f.db.DeleteFastToken(ctx, hash)
}

func (f fastStore) DeleteFastTokens(ctx context.Context, ua string) (int64, error) {
	return f.db.DeleteFastTokens(ctx, ua)
}

func (f fastStore) DeleteExpiredFastTokens(ctx context.Context, now time.Time) (int64, error) {
	return f.db.DeleteExpiredFastTokens(ctx, now)
}

type fastListing struct {
	tokens []sqlite.FastToken
	err    error
}

// cmdFastTokens lists the devices holding FAST tokens and revokes the
// tokens of the one chosen. Revoking also disconnects that device's
// sessions, so a lost phone is out at once and cannot log in again
// without the password.
func (b *Bouncer) cmdFastTokens(c *adminCall) {
	db, ok := b.opt.Archive.(FastTokenDB)
	if !ok {
		b.adminDone(c, nil, fault("FAST tokens are not stored: the bouncer runs without its database."))
		return
	}
	timeout := b.opt.DBTimeout
	if c.form == nil {
		later(b, func() fastListing {
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			ts, err := db.FastTokens(ctx, "")
			return fastListing{ts, err}
		}, func(l fastListing) {
			if l.err != nil {
				b.log.Error("listing FAST tokens", "err", l.err)
				b.adminDone(c, nil, fault("Could not read the FAST tokens from the database."))
				return
			}
			b.adminForm(c, fastTokenForm(l.tokens, time.Now()))
		})
		return
	}
	ua := c.value("revoke")
	if ua == "" || ua == fastRevokeNone {
		b.adminDone(c, nil, info("No token revoked."))
		return
	}
	later(b, func() fastListing {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		n, err := db.DeleteFastTokens(ctx, ua)
		return fastListing{tokens: make([]sqlite.FastToken, n), err: err}
	}, func(l fastListing) {
		if l.err != nil {
			b.log.Error("revoking FAST tokens", "err", l.err)
			b.adminDone(c, nil, fault("Could not revoke: the database failed. Try again."))
			return
		}
		kicked := 0
		for _, s := range b.reg.All() {
			if u, ok := s.Conn.(interface{ UserAgent() listener.UserAgent }); ok && u.UserAgent().ID == ua {
				kicked++
				s.Conn.Close(&stanza.StreamError{Condition: "not-authorized", Text: "this device's login was revoked by " + c.s.JID.Resourcepart()})
			}
		}
		b.log.Info("FAST tokens revoked", "user_agent", ua, "tokens", len(l.tokens), "sessions_closed", kicked, "by", c.s.JID.String())
		b.adminDone(c, nil, info(fmt.Sprintf("Revoked %d token(s) of that device and closed %d of its session(s). It must log in with the password again.", len(l.tokens), kicked)))
	})
}

// fastRevokeNone is the choice to revoke nothing: every option needs a
// value (Profanity crashes on an empty one), and no user-agent id is this.
const fastRevokeNone = "(none)"

// fastTokenForm lists the tokens by device and offers each device for
// revocation.
func fastTokenForm(ts []sqlite.FastToken, now time.Time) *stanza.Element {
	x := dataForm("form", "FAST tokens", "Devices that log in with a token instead of the password. Choose one to revoke its tokens (and disconnect it), or none to only look.")
	f := stanza.New(stanza.NSDataForm, "field", "type", "list-single", "var", "revoke", "label", "Revoke")
	option(f, "(none)", fastRevokeNone)
	seen := map[string]bool{}
	if len(ts) == 0 {
		fixed(x, "no-tokens", "No device holds a FAST token.")
	}
	for i, t := range ts {
		name := t.Device
		if t.Software != "" {
			name = t.Software + " on " + orNone(t.Device)
		}
		used := "never used"
		if !t.LastUsed.IsZero() {
			used = "last used " + t.LastUsed.Format(time.RFC3339)
		}
		state := "expires " + t.Expires.Format(time.RFC3339)
		if !now.Before(t.Expires) {
			state = "expired " + t.Expires.Format(time.RFC3339)
		}
		fixed(x, "token-"+strconv.Itoa(i+1), fmt.Sprintf("%s (id %s): %s, %s, %s", orNone(name), t.UserAgent, t.Mechanism, used, state))
		if !seen[t.UserAgent] {
			seen[t.UserAgent] = true
			option(f, orNone(name)+" ("+t.UserAgent+")", t.UserAgent)
		}
	}
	x.Append(f)
	return x
}

// userAgentParts names a SASL2 client's software and device (XEP-0388
// <user-agent/>) for the clients list: "Conversations on Pixel 7".
func userAgentParts(s *sessions.Session) []string {
	u, ok := s.Conn.(interface{ UserAgent() listener.UserAgent })
	if !ok {
		return nil
	}
	ua := u.UserAgent()
	switch {
	case ua.Software != "" && ua.Device != "":
		return []string{ua.Software + " on " + ua.Device}
	case ua.Software != "" || ua.Device != "":
		return []string{ua.Software + ua.Device}
	}
	return nil
}
