package bouncer

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"xmppbouncer/config"
)

// webRoot returns the repository's web/root, running `make web` when it is
// missing (npm comes with `make deps`).
func webRoot(t *testing.T) string {
	t.Helper()
	repo, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(repo, "web", "root")
	// Fetches Converse.js only when web/root lacks this version; always
	// copies the repository's index.html and init.js.
	if out, err := exec.Command("make", "-C", repo, "web").CombinedOutput(); err != nil {
		t.Fatalf("make web (run `make deps` as root if npm is missing): %v\n%s", err, out)
	}
	return root
}

func chromiumPath(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("chromium is not installed: run `make deps` as root (apt-get install chromium)")
	return ""
}

// TestWebClientInChromium: headless Chromium loads Converse.js from the
// bouncer, logs in over the WebSocket with the prefilled JID, opens the
// room, shows its history, shows what a bot says, and sends a message
// that reaches the room.
func TestWebClientInChromium(t *testing.T) {
	browser := chromiumPath(t)
	root := webRoot(t)
	e := newEnv(t, nil, func(c *config.Config) {
		c.Listen.WebSocketAddress = "127.0.0.1:0"
		c.Web.Root = root
	})
	room := "lounge@" + e.srv.MUC
	bob := e.bobInRoom(room)
	for _, b := range []string{"history one", "history two"} {
		bob.Send(t, `<message to="`+room+`" type="groupchat"><body>`+b+`</body></message>`)
		bob.Expect(t, "own echo", hasBody(b))
	}
	// The bouncer holds the room before the browser comes.
	keeper := e.availableClient("keeper")
	join(t, keeper, room, "alice", `<history maxstanzas="0"/>`)
	bob.Expect(t, "alice joins", presenceFrom(room+"/alice"))

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser),
		chromedp.NoSandbox, // root in CI
		chromedp.Flag("ignore-certificate-errors", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	actx, acancel := chromedp.NewExecAllocator(ctx, opts...)
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx)
	defer bcancel()
	var logMu sync.Mutex
	var console []string
	_ = chromedp.Listen(bctx, func(ev any) {
		var line string
		switch ev := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			var args []string
			for _, a := range ev.Args {
				args = append(args, string(a.Value))
			}
			line = string(ev.Type) + ": " + strings.Join(args, " ")
		case *runtime.EventExceptionThrown:
			line = fmt.Sprintf("exception: %s %v", ev.ExceptionDetails.Text, ev.ExceptionDetails.Exception)
		default:
			return
		}
		logMu.Lock()
		console = append(console, line)
		logMu.Unlock()
	})
	fail := func(step string, err error) {
		t.Helper()
		logMu.Lock()
		defer logMu.Unlock()
		text, _ := chromedp.Run(bctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ''`))
		t.Fatalf("%s: %v\npage text:\n%s\nconsole:\n%s", step, err, text, strings.Join(console, "\n"))
	}
	wait := func(what, js string) {
		t.Helper()
		if _, err := chromedp.Run(bctx, chromedp.Poll[bool](js, chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(30*time.Second))); err != nil {
			fail("waiting for "+what, err)
		}
	}
	url := fmt.Sprintf("https://%s/#converse/room?jid=%s", e.lsrv.WebSocketAddr(), room)
	if err := chromedp.Do(bctx,
		chromedp.Navigate(url),
		chromedp.WaitVisible(chromedp.ID("converse-login-password")),
	); err != nil {
		fail("loading the login form", err)
	}
	jid, err := chromedp.Run(bctx, chromedp.Value(chromedp.ID("converse-login-jid")))
	if err != nil {
		fail("reading the login form", err)
	}
	if jid != e.cfg.Upstream.JID {
		t.Fatalf("login form prefilled with %q, want %q", jid, e.cfg.Upstream.JID)
	}
	if err := chromedp.Do(bctx,
		// Enter submits the form as a user would (a submit event).
		chromedp.SendKeys(chromedp.ID("converse-login-password"), localPassword+"\r"),
	); err != nil {
		fail("logging in", err)
	}
	wait("the room's history", `document.body.innerText.includes('history one') && document.body.innerText.includes('history two')`)

	bob.Send(t, `<message to="`+room+`" type="groupchat"><body>the bot says hello</body></message>`)
	wait("the bot's message", `document.body.innerText.includes('the bot says hello')`)

	if err := chromedp.Do(bctx,
		chromedp.WaitVisible(chromedp.CSS("textarea.chat-textarea")),
		chromedp.SendKeys(chromedp.CSS("textarea.chat-textarea"), "typed in chromium\r"),
	); err != nil {
		fail("typing a message", err)
	}
	got := bob.Expect(t, "the message typed in the browser", hasBody("typed in chromium"))
	if got.From() != room+"/alice" {
		t.Fatalf("from %q", got.From())
	}
	keeper.Expect(t, "the browser's message on the sibling", hasBody("typed in chromium"))
}
