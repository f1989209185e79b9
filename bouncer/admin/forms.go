package admin

// XEP-0004 data forms and the texts the commands show.
//
// Forms are built for the clients that show them: every field has a var
// of its own, fixed lines included (slixmpp and poezio keep fields by
// var), and no option has an empty value (Profanity crashes on one).
// TestAdminFormsEveryClientCanRead walks every command's every step.
//
// These builders stay ours rather than mellium's form package (v0.22.0),
// which the bouncer uses where a form fits it (mamrequest.go, push.go):
// form.Fixed takes no var, and the fixed lines need one (above); forms are
// built field by field (options and required added to a field after it is
// made), where form.New wants every option up front; and parseForm reads
// any submission, where form.Data's UnmarshalXML fails on an element it
// does not know inside <x/> and ignores the fields' namespace. From
// mellium's commands package the replies use Note and Actions
// (commands.go); the rest of it is the client side (Command.Execute on an
// *xmpp.Session), with no server-side handler or session store.

import (
	"fmt"
	"strconv"
	"time"

	"xmppbouncer/stanza"
)

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

const stampFormat = "2006-01-02 15:04:05 MST"

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func retentionText(d time.Duration) string {
	if d <= 0 {
		return "forever"
	}
	if d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return d.String()
}

// retentionValue writes a retention the way the config takes it.
func retentionValue(d time.Duration) string {
	if d <= 0 {
		return "0"
	}
	return retentionText(d)
}
