package dev_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/switchboard-chat/switchboard/pkg/config"
	"github.com/switchboard-chat/switchboard/pkg/dbtest"
	"github.com/switchboard-chat/switchboard/pkg/dev"
)

// startDev runs a dev cluster in-process on random loopback ports against the real test
// stores (the embedded ones are a newcomer's convenience, not what tests prove).
func startDev(t *testing.T) *dev.Cluster {
	t.Helper()
	redisURL := os.Getenv("TEST_REDIS_URL")
	if redisURL == "" {
		redisURL = "redis://127.0.0.1:6379/0"
	}
	_, prefix := dbtest.NewRedis(t) // reachability check and cleanup of the prefix
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
	return c
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

// TestBrowserChat drives the embedded web client in headless Chromium: alice and bob,
// each in their own browser context on a different host, register, create a thread,
// exchange messages both ways, and bob reloads and still sees the history.
func TestBrowserChat(t *testing.T) {
	exe := chromiumPath(t)
	c := startDev(t)
	hosts := c.HostURLs()

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
	defer cancelAlloc()
	alice, cancelA := chromedp.NewContext(allocCtx)
	defer cancelA()
	alice, cancelAT := context.WithTimeout(alice, 90*time.Second)
	defer cancelAT()
	if err := chromedp.Do(alice); err != nil { // starts the browser
		t.Fatalf("start chromium: %v", err)
	}
	bob, cancelB := chromedp.NewContext(alice, chromedp.WithNewBrowserContext())
	defer cancelB()

	register := func(ctx context.Context, base, name string) {
		t.Helper()
		err := chromedp.Do(ctx,
			chromedp.Navigate(base+"/"),
			chromedp.WaitVisible(chromedp.ID("login-username")),
			chromedp.SendKeys(chromedp.ID("login-username"), name),
			chromedp.SendKeys(chromedp.ID("login-password"), "correct horse battery"),
			chromedp.Click(chromedp.ID("register-submit")),
			chromedp.WaitVisible(chromedp.ID("app-view")),
			chromedp.WaitVisible(chromedp.CSS(`#host-footer[data-state="connected"]`)),
		)
		if err != nil {
			t.Fatalf("%s registers on %s: %v", name, base, err)
		}
	}
	register(alice, hosts[0], "alice")
	register(bob, hosts[1], "bob")

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

	msgWith := func(text string) string {
		return fmt.Sprintf(`//ol[@id="messages"]/li[contains(@class,"message")]//*[contains(@class,"body") and contains(., %q)]`, text)
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
		chromedp.WaitVisible(chromedp.Search(msgWith("hi bob <b>not bold</b>"))),
		chromedp.SendKeys(chromedp.ID("composer"), "hi alice, noon?\n"),
		chromedp.WaitVisible(chromedp.CSS(`li.message.own[data-status="sent"]`)),
	)
	if err != nil {
		t.Fatalf("bob receives and answers: %v", err)
	}
	if err := chromedp.Do(alice, chromedp.WaitVisible(chromedp.Search(msgWith("hi alice, noon?")))); err != nil {
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
		chromedp.WaitVisible(chromedp.Search(msgWith("hi bob <b>not bold</b>"))),
		chromedp.WaitVisible(chromedp.Search(msgWith("hi alice, noon?"))),
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
