package dev_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	goredis "github.com/redis/go-redis/v9"

	"github.com/switchboard-chat/switchboard/pkg/chat"
	"github.com/switchboard-chat/switchboard/pkg/config"
	"github.com/switchboard-chat/switchboard/pkg/dbtest"
	"github.com/switchboard-chat/switchboard/pkg/dev"
	"github.com/switchboard-chat/switchboard/pkg/httpapi"
)

// devCluster is a running dev cluster and the Redis client and key prefix it keeps its
// sessions under, so a test can make Redis lose one.
type devCluster struct {
	*dev.Cluster
	redis  goredis.UniversalClient
	prefix string
}

// startDev runs a dev cluster in-process on random loopback ports against the real test
// stores (the embedded ones are a newcomer's convenience, not what tests prove).
func startDev(t *testing.T) *devCluster {
	t.Helper()
	redisURL := os.Getenv("TEST_REDIS_URL")
	if redisURL == "" {
		redisURL = "redis://127.0.0.1:6379/0"
	}
	rdb, prefix := dbtest.NewRedis(t) // also checks reachability and cleans up the prefix
	env := map[string]string{
		"CHAT_PUBLIC_ADDR":   "127.0.0.1:0",
		"CHAT_INTERNAL_ADDR": "127.0.0.1:0",
		"CHAT_DATABASE_URL":  dbtest.NewDatabaseURL(t),
		"CHAT_REDIS_URL":     redisURL,
		"CHAT_REDIS_PREFIX":  prefix,
		"CHAT_BCRYPT_COST":   "4",
		"CHAT_LOG_LEVEL":     "warn",
	}
	cfg, err := config.Load("test", nil, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(config.Requirements{}); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, cancel := context.WithCancel(context.Background())
	c, err := dev.Start(ctx, cfg, log)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Wait(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("dev cluster stopped with %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("dev cluster did not stop within 20 s")
		}
	})
	return &devCluster{Cluster: c, redis: rdb, prefix: prefix}
}

func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, p := range []string{os.Getenv("CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if p == "" {
			continue
		}
		if _, err := exec.LookPath(p); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is not installed (scripts/test.sh installs it: apt-get install chromium)")
	}
	t.Skip("chromium is not installed; run scripts/test.sh or apt-get install chromium")
	return ""
}

// newBrowser starts headless Chromium (exe) with a throwaway profile and returns the
// context of its first tab, which lives at most budget. Tabs in browser contexts of their
// own (chromedp.WithNewBrowserContext) derive from it.
func newBrowser(t *testing.T, exe string, budget time.Duration) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:0:0],
		chromedp.ExecPath(exe),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1100, 760),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(cancel)
	ctx, cancelBudget := context.WithTimeout(ctx, budget)
	t.Cleanup(cancelBudget)
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

const testPassword = "correct horse battery"

// register opens the web client on base and signs name up through the login screen.
func register(ctx context.Context, t *testing.T, base, name string) {
	t.Helper()
	err := chromedp.Do(ctx,
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.ID("login-username")),
		signIn(name, "register-submit"),
	)
	if err != nil {
		t.Fatalf("%s registers on %s: %v", name, base, err)
	}
}

// signIn fills the login screen, presses button (register-submit or login-submit) and
// waits for the app view with a connected socket. The username field is emptied first
// because the login screen keeps the last name typed when a session ends.
func signIn(name, button string) chromedp.Action[chromedp.Void] {
	return chromedp.Steps(
		// chromedp.SetValue cannot set an empty value (it answers "could not set value").
		chromedp.Evaluate[chromedp.Void](`document.getElementById('login-username').value = ''`),
		chromedp.SendKeys(chromedp.ID("login-username"), name),
		chromedp.SendKeys(chromedp.ID("login-password"), testPassword),
		chromedp.Click(chromedp.ID(button)),
		chromedp.WaitVisible(chromedp.ID("app-view")),
		chromedp.WaitVisible(chromedp.CSS(`#host-footer[data-state="connected"]`)),
	)
}

// messageWith is an XPath to a shown message whose body contains text.
func messageWith(text string) string {
	return fmt.Sprintf(`//ol[@id="messages"]/li[contains(@class,"message")]//*[contains(@class,"body") and contains(., %q)]`, text)
}

// TestBrowserChat drives the embedded web client in headless Chromium: alice and bob,
// each in their own browser context on a different host, register, create a thread,
// exchange messages both ways, and bob reloads and still sees the history.
func TestBrowserChat(t *testing.T) {
	exe := chromiumPath(t)
	c := startDev(t)
	hosts := c.HostURLs()

	alice := newBrowser(t, exe, 90*time.Second)
	bob, cancelB := chromedp.NewContext(alice, chromedp.WithNewBrowserContext())
	defer cancelB()

	register(alice, t, hosts[0], "alice")
	register(bob, t, hosts[1], "bob")

	aliceHost, err := chromedp.Run(alice, chromedp.Text(chromedp.ID("host-footer")))
	if err != nil {
		t.Fatal(err)
	}
	bobHost, err := chromedp.Run(bob, chromedp.Text(chromedp.ID("host-footer")))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(aliceHost, "dev1") || !strings.Contains(bobHost, "dev2") {
		t.Fatalf("alice and bob should be on dev1 and dev2, footers say %q and %q", aliceHost, bobHost)
	}

	// alice creates the thread and sends; her message goes sending -> sent.
	err = chromedp.Do(alice,
		chromedp.SendKeys(chromedp.ID("new-thread-name"), "lunch plans"),
		chromedp.SendKeys(chromedp.ID("new-thread-members"), "bob"),
		chromedp.Click(chromedp.ID("new-thread-submit")),
		chromedp.WaitVisible(chromedp.ID("composer")),
		chromedp.SendKeys(chromedp.ID("composer"), "hi bob <b>not bold</b>\n"),
		chromedp.WaitVisible(chromedp.CSS(`li.message.own[data-status="sent"]`)),
	)
	if err != nil {
		t.Fatalf("alice creates a thread and sends: %v", err)
	}
	// bob sees the thread appear with the message, opens it and answers.
	err = chromedp.Do(bob,
		chromedp.WaitVisible(chromedp.CSS(`li.thread-item`)),
		chromedp.Click(chromedp.CSS(`li.thread-item`)),
		chromedp.WaitVisible(chromedp.Search(messageWith("hi bob <b>not bold</b>"))),
		chromedp.SendKeys(chromedp.ID("composer"), "hi alice, noon?\n"),
		chromedp.WaitVisible(chromedp.CSS(`li.message.own[data-status="sent"]`)),
	)
	if err != nil {
		t.Fatalf("bob receives and answers: %v", err)
	}
	if err := chromedp.Do(alice, chromedp.WaitVisible(chromedp.Search(messageWith("hi alice, noon?")))); err != nil {
		t.Fatalf("alice receives bob's answer: %v", err)
	}
	// The body was text, not markup.
	bolds, err := chromedp.Run(alice, chromedp.Evaluate[int](`document.querySelectorAll("#messages b").length`))
	if err != nil {
		t.Fatal(err)
	}
	if bolds != 0 {
		t.Fatalf("a message body was rendered as HTML (%d <b> elements)", bolds)
	}
	// bob reloads: history is still there.
	err = chromedp.Do(bob,
		chromedp.Reload(),
		chromedp.WaitVisible(chromedp.CSS(`li.thread-item`)),
		chromedp.Click(chromedp.CSS(`li.thread-item`)),
		chromedp.WaitVisible(chromedp.Search(messageWith("hi bob <b>not bold</b>"))),
		chromedp.WaitVisible(chromedp.Search(messageWith("hi alice, noon?"))),
	)
	if err != nil {
		t.Fatalf("bob reloads and sees the history: %v", err)
	}
	png, err := chromedp.Run(alice, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(t.TempDir(), "web-client.png")
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", shot)
	if dst := os.Getenv("SCREENSHOT_OUT"); dst != "" {
		if err := os.WriteFile(dst, png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// signedInTab starts a dev cluster and a browser tab in which user has registered,
// created thread and sent first in it. The returned afterClose records what the page
// sends once its socket closes, and window.sameDocument is set, so a reload shows.
func signedInTab(t *testing.T, budget time.Duration, user, thread, first string) (*devCluster, []string, context.Context, *afterClose) {
	t.Helper()
	exe := chromiumPath(t)
	c := startDev(t)
	hosts := c.HostURLs()
	tab := newBrowser(t, exe, budget)
	watch := &afterClose{}
	if err := chromedp.Listen(tab, watch.listen); err != nil {
		t.Fatal(err)
	}
	register(tab, t, hosts[0], user)
	if _, err := chromedp.Run(tab, chromedp.Evaluate[bool](`window.sameDocument = true`)); err != nil {
		t.Fatal(err)
	}
	within(tab, t, user+" creates a thread and sends",
		chromedp.SendKeys(chromedp.ID("new-thread-name"), thread),
		chromedp.Click(chromedp.ID("new-thread-submit")),
		chromedp.WaitVisible(chromedp.ID("composer")),
		chromedp.SendKeys(chromedp.ID("composer"), first+"\n"),
		chromedp.WaitVisible(chromedp.Search(ownSent(first))),
	)
	return c, hosts, tab, watch
}

// TestBrowserSessionEnd checks what a signed-in user of the web client sees when the
// session ends under it: logged out elsewhere (the server closes its sockets with 4001)
// or lost by Redis (the next API call is answered 401), the page goes back to the login
// screen in place, says that the session ended and stops reconnecting; logging in again
// there brings back a connected app with the user's conversations.
func TestBrowserSessionEnd(t *testing.T) {
	// No pause after the send: the client's ack (50 ms after sent) may still be on its
	// way as the session ends. The host used to close the TCP connection with it unread,
	// and the reset that caused destroyed the 4001 in about one run in a dozen.
	c, hosts, tab, watch := signedInTab(t, 90*time.Second, "carol", "lunch plans", "before the logout")

	// The session is logged out from another host, with the browser's own cookie.
	token := sessionToken(tab, t, hosts[0])
	watch.arm()
	logout(t, hosts[1], token)
	expectLoginScreen(tab, t, "after a logout elsewhere", watch)

	within(tab, t, "carol logs in again and finds her thread",
		signIn("carol", "login-submit"),
		chromedp.WaitNotVisible(chromedp.ID("error-banner")),
		chromedp.Click(chromedp.Search(threadNamed("lunch plans"))),
		chromedp.WaitVisible(chromedp.Search(messageWith("before the logout"))),
		chromedp.SendKeys(chromedp.ID("composer"), "after logging in again\n"),
		chromedp.WaitVisible(chromedp.Search(ownSent("after logging in again"))),
		// Let the read mark (300 ms after the message shows) go out while the session
		// lives, or its 401 would beat carol's click below.
		chromedp.Sleep(time.Second),
		chromedp.SendKeys(chromedp.ID("new-thread-name"), "dinner"),
	)

	// Redis loses the new session: the socket stays open (its host only closes it at
	// expiry), so only the 401 of the next API call can tell the client.
	key := c.prefix + "session:" + chat.HashToken(sessionToken(tab, t, hosts[0]))
	if n, err := c.redis.Del(context.Background(), key).Result(); err != nil || n != 1 {
		t.Fatalf("delete session key %s: %d deleted, %v", key, n, err)
	}
	watch.arm()
	// Any API call answered 401 will do. The client's presence refresh (every 10 s) can
	// still come before the click and hide the button; the screen is checked either way.
	clickCtx, cancelClick := context.WithTimeout(tab, 3*time.Second)
	if err := chromedp.Do(clickCtx, chromedp.Click(chromedp.ID("new-thread-submit"))); err != nil {
		t.Logf("carol could not start another conversation (%v); another API call met the 401 first", err)
	}
	cancelClick()
	expectLoginScreen(tab, t, "after an API call answered 401", watch)
}

// TestBrowserStaleUnauthorized checks that a 401 answering a request of an ended session
// does not end the session the user has since logged in to. dave asks for a new
// conversation; the request is held in the browser while his session is logged out
// elsewhere, then sent with the dead session's cookie, and its answer (401) is held until
// he has logged in again. Once it arrives he must stay in the app, connected and able to
// send.
func TestBrowserStaleUnauthorized(t *testing.T) {
	_, hosts, tab, watch := signedInTab(t, 60*time.Second, "dave", "standup", "first session")
	hold := newHoldCreate(tab)
	if err := chromedp.Listen(tab, hold.listen); err != nil {
		t.Fatal(err)
	}

	// Only the conversation list's path is intercepted: the refreshes (GET) go straight
	// on, the creation (POST) is held before it leaves the browser.
	if _, err := chromedp.Call(tab, fetch.Enable, fetch.EnableParams{
		Patterns: []*fetch.RequestPattern{{URLPattern: "*/api/v1/threads"}},
	}); err != nil {
		t.Fatal(err)
	}
	within(tab, t, "dave asks for another conversation",
		chromedp.SendKeys(chromedp.ID("new-thread-name"), "retro"),
		chromedp.Click(chromedp.ID("new-thread-submit")),
	)
	req := holdWait(t, "the creation request is paused", hold.request)

	token := sessionToken(tab, t, hosts[0])
	watch.arm()
	logout(t, hosts[1], token)
	expectLoginScreen(tab, t, "after a logout elsewhere", watch)

	// The browser still holds the dead session's cookie (the logout was not its own), so
	// the request now leaves with it; its answer is held in turn.
	if _, err := chromedp.Call(tab, fetch.ContinueRequest, fetch.ContinueRequestParams{
		RequestID: req.RequestID, InterceptResponse: new(true),
	}); err != nil {
		t.Fatal(err)
	}
	res := holdWait(t, "the answer to the creation is paused", hold.response)
	if res.ResponseStatusCode != http.StatusUnauthorized {
		t.Fatalf("the server answered the dead session's request %d, want 401", res.ResponseStatusCode)
	}

	within(tab, t, "dave logs in again and opens his thread",
		signIn("dave", "login-submit"),
		chromedp.Click(chromedp.Search(threadNamed("standup"))),
		chromedp.WaitVisible(chromedp.Search(messageWith("first session"))),
	)

	// The stale 401 reaches the page now.
	if _, err := chromedp.Call(tab, fetch.ContinueResponse, fetch.ContinueResponseParams{RequestID: res.RequestID}); err != nil {
		t.Fatal(err)
	}
	if got := holdWait(t, "the page receives the stale answer", hold.delivered); got != http.StatusUnauthorized {
		t.Fatalf("the page received status %d for the stale request, want 401", got)
	}
	if sent, old := hold.sentCookie(), httpapi.CookieName+"="+token; !strings.Contains(sent, old) {
		t.Fatalf("the stale request was sent with cookie %q, want the ended session's %q", sent, old)
	}
	time.Sleep(2 * time.Second) // a return to the login screen would come within this
	type screen struct {
		LoginHidden, AppHidden, SameDocument bool
		Footer, Error                        string
	}
	got, err := chromedp.Run(tab, chromedp.Evaluate[screen](`({
		LoginHidden: document.getElementById('login-view').hidden,
		AppHidden: document.getElementById('app-view').hidden,
		SameDocument: window.sameDocument === true,
		Footer: document.getElementById('host-footer').dataset.state,
		Error: document.getElementById('error-banner').hidden ? '' : document.getElementById('error').textContent,
	})`))
	if err != nil {
		t.Fatal(err)
	}
	if !got.LoginHidden || got.AppHidden || got.Footer != "connected" || got.Error != "" || !got.SameDocument {
		t.Fatalf("2 s after the stale 401: %+v; want the app only, connected, without an error, in the same document", got)
	}
	within(tab, t, "dave sends in his new session",
		chromedp.SendKeys(chromedp.ID("composer"), "second session\n"),
		chromedp.WaitVisible(chromedp.Search(ownSent("second session"))),
	)
	if err := hold.failed(); err != nil {
		t.Errorf("letting an intercepted request go on: %v", err)
	}
}

// holdCreate holds the first conversation creation (POST /threads) the page sends while
// the Fetch domain intercepts, and lets every other intercepted request go on at once.
type holdCreate struct {
	ctx       context.Context
	request   chan *fetch.EventRequestPaused // the creation, paused before it is sent
	response  chan *fetch.EventRequestPaused // its answer, paused before the page has it
	delivered chan int64                     // its status, once the page has the whole answer

	mu      sync.Mutex
	held    fetch.RequestID
	network network.RequestID
	status  int64
	cookie  string // the Cookie header it was sent with
	err     error
}

func newHoldCreate(ctx context.Context) *holdCreate {
	return &holdCreate{
		ctx:       ctx,
		request:   make(chan *fetch.EventRequestPaused, 1),
		response:  make(chan *fetch.EventRequestPaused, 1),
		delivered: make(chan int64, 1),
	}
}

// listen is a chromedp.Listen callback; the commands it needs run on goroutines of their
// own, since a command run here would wait for the loop it blocks.
func (h *holdCreate) listen(ev any) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch ev := ev.(type) {
	case *fetch.EventRequestPaused:
		switch {
		case h.held == "" && ev.Request.Method == http.MethodPost:
			h.held, h.network = ev.RequestID, ev.NetworkID
			h.request <- ev
		case ev.RequestID == h.held && (ev.ResponseStatusCode != 0 || ev.ResponseErrorReason != ""):
			select {
			case h.response <- ev:
			default:
			}
		default:
			go h.pass(ev.RequestID)
		}
	case *network.EventRequestWillBeSentExtraInfo:
		if h.network != "" && ev.RequestID == h.network {
			for k, v := range ev.Headers {
				if strings.EqualFold(k, "Cookie") {
					h.cookie = fmt.Sprint(v)
				}
			}
		}
	case *network.EventResponseReceived:
		if h.network != "" && ev.RequestID == h.network {
			h.status = ev.Response.Status
		}
	case *network.EventLoadingFinished:
		if h.network != "" && ev.RequestID == h.network {
			select {
			case h.delivered <- h.status:
			default:
			}
		}
	}
}

func (h *holdCreate) pass(id fetch.RequestID) {
	_, err := chromedp.Call(h.ctx, fetch.ContinueRequest, fetch.ContinueRequestParams{RequestID: id})
	if err != nil && h.ctx.Err() == nil {
		h.mu.Lock()
		if h.err == nil {
			h.err = err
		}
		h.mu.Unlock()
	}
}

func (h *holdCreate) sentCookie() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.cookie
}

func (h *holdCreate) failed() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.err
}

// holdWait takes the next value from ch, failing the test if none comes within 10 s.
func holdWait[T any](t *testing.T, what string, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: nothing within 10 s", what)
	}
	var zero T
	return zero
}

// within runs the actions with a deadline of their own, so a screen that never comes fails
// the test at that step, not at the end of the test's budget.
func within(ctx context.Context, t *testing.T, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// expectLoginScreen waits for the login screen and checks that the user is told why, that
// the page was not reloaded and that it sent nothing once its socket had closed.
func expectLoginScreen(ctx context.Context, t *testing.T, when string, watch *afterClose) {
	t.Helper()
	within(ctx, t, "the login screen comes "+when,
		chromedp.WaitVisible(chromedp.ID("login-view")),
		chromedp.WaitNotVisible(chromedp.ID("app-view")),
		// A reconnect attempt or a late switch back to the app would come within this.
		chromedp.Sleep(time.Second),
	)
	type screen struct {
		LoginHidden, AppHidden, SameDocument bool
		Error                                string
	}
	got, err := chromedp.Run(ctx, chromedp.Evaluate[screen](`({
		LoginHidden: document.getElementById('login-view').hidden,
		AppHidden: document.getElementById('app-view').hidden,
		SameDocument: window.sameDocument === true,
		Error: document.getElementById('error-banner').hidden ? '' : document.getElementById('error').textContent,
	})`))
	if err != nil {
		t.Fatal(err)
	}
	if got.LoginHidden || !got.AppHidden {
		t.Errorf("%s: login view hidden=%v, app view hidden=%v; want the login screen only", when, got.LoginHidden, got.AppHidden)
	}
	if !strings.Contains(got.Error, "session has ended") {
		t.Errorf("%s: the page shows error %q, want one saying the session has ended", when, got.Error)
	}
	if !got.SameDocument {
		t.Errorf("%s: the page was reloaded", when)
	}
	if sent := watch.sent(); len(sent) > 0 {
		t.Errorf("%s: the page still knocked with its dead session after the socket closed: %s", when, strings.Join(sent, ", "))
	}
}

// afterClose records what the page sends once its socket has closed, from the last arm
// on. A client that takes the close (4001) or a 401 for the end of its session goes
// straight to the login screen and sends nothing more; one that takes a 4001 for a
// dropped connection tries the dead session again (a new socket or an API call) and
// reaches the same screen only through the 401 that answers it.
type afterClose struct {
	mu     sync.Mutex
	armed  bool
	closed bool
	after  []string
}

// listen is a chromedp.Listen callback: it runs on the tab's reading goroutine, so it
// only records.
func (a *afterClose) listen(ev any) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.armed {
		return
	}
	switch ev := ev.(type) {
	case *network.EventWebSocketClosed:
		a.closed = true
	case *network.EventWebSocketCreated:
		if a.closed {
			a.after = append(a.after, "WebSocket "+ev.URL)
		}
	case *network.EventRequestWillBeSent:
		if a.closed {
			a.after = append(a.after, ev.Request.Method+" "+ev.Request.URL)
		}
	}
}

func (a *afterClose) arm() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.armed, a.closed, a.after = true, false, nil
}

func (a *afterClose) sent() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.after...)
}

// sessionToken reads the browser's HttpOnly session cookie for base.
func sessionToken(ctx context.Context, t *testing.T, base string) string {
	t.Helper()
	res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{base + "/"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, ck := range res.Cookies {
		if ck.Name == httpapi.CookieName {
			return ck.Value
		}
	}
	t.Fatalf("no %s cookie for %s", httpapi.CookieName, base)
	return ""
}

// logout ends the session behind token through base's API, as another tab or device
// holding the same session would.
func logout(t *testing.T, base, token string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/v1/auth/logout", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.AddCookie(&http.Cookie{Name: httpapi.CookieName, Value: token})
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusNoContent {
		body, _ := io.ReadAll(res.Body)
		t.Fatalf("logout on %s: %s %s", base, res.Status, body)
	}
}

// ownSent is an XPath to the user's own message whose body contains text, once stored.
func ownSent(text string) string {
	return fmt.Sprintf(`//ol[@id="messages"]/li[contains(@class,"message") and contains(@class,"own") and @data-status="sent"]//*[contains(@class,"body") and contains(., %q)]`, text)
}

// threadNamed is an XPath to the conversation list entry named name.
func threadNamed(name string) string {
	return fmt.Sprintf(`//ul[@id="thread-list"]/li[contains(@class,"thread-item")][.//*[contains(@class,"thread-name") and normalize-space()=%q]]`, name)
}
