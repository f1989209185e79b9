package admin

// The FAST tokens command (XEP-0484): list the devices that can log in
// with a token, and revoke one, e.g. a lost phone, from another client.

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"xmppbouncer/stanza"
	"xmppbouncer/store"
)

type fastListing struct {
	tokens []store.FastToken
	err    error
}

// fastTokens lists the devices holding FAST tokens and revokes the tokens
// of the one chosen. Revoking also disconnects that device's sessions, so
// a lost phone is out at once and cannot log in again without the
// password.
func (a *Commands) fastTokens(c *call) {
	db := a.opt.Fast
	if db == nil {
		a.done(c, nil, fault("FAST tokens are not stored: the bouncer runs without its database."))
		return
	}
	timeout := a.opt.DBTimeout
	if c.form == nil {
		later(a, func() fastListing {
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			ts, err := db.FastTokens(ctx, "")
			return fastListing{ts, err}
		}, func(l fastListing) {
			if l.err != nil {
				a.opt.Log.Error("listing FAST tokens", "err", l.err)
				a.done(c, nil, fault("Could not read the FAST tokens from the database."))
				return
			}
			a.askForm(c, fastTokenForm(l.tokens, time.Now()))
		})
		return
	}
	ua := c.value("revoke")
	if ua == "" || ua == fastRevokeNone {
		a.done(c, nil, info("No token revoked."))
		return
	}
	later(a, func() fastListing {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		n, err := db.DeleteFastTokens(ctx, ua)
		return fastListing{tokens: make([]store.FastToken, n), err: err}
	}, func(l fastListing) {
		if l.err != nil {
			a.opt.Log.Error("revoking FAST tokens", "err", l.err)
			a.done(c, nil, fault("Could not revoke: the database failed. Try again."))
			return
		}
		kicked := 0
		for _, s := range a.core.Clients() {
			if s.AgentID == ua {
				kicked++
				a.core.Disconnect(s.ID, &stanza.StreamError{Condition: "not-authorized", Text: "this device's login was revoked by " + c.from.Resource})
			}
		}
		a.opt.Log.Info("FAST tokens revoked", "user_agent", ua, "tokens", len(l.tokens), "sessions_closed", kicked, "by", c.from.JID)
		a.done(c, nil, info(fmt.Sprintf("Revoked %d token(s) of that device and closed %d of its session(s). It must log in with the password again.", len(l.tokens), kicked)))
	})
}

// fastRevokeNone is the choice to revoke nothing: every option needs a
// value (Profanity crashes on an empty one), and no user-agent id is this.
const fastRevokeNone = "(none)"

// fastTokenForm lists the tokens by device and offers each device for
// revocation.
func fastTokenForm(ts []store.FastToken, now time.Time) *stanza.Element {
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
