package clustertest

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

// pendingJSON is `chatctl pending --json` (section 6 of the wire contract).
type pendingJSON struct {
	User struct {
		ID       string `json:"id"`
		Username string `json:"username"`
	} `json:"user"`
	Threads []pendingThread `json:"threads"`
}

type pendingThread struct {
	ThreadID string `json:"thread_id"`
	Name     string `json:"name"`
	AckedSeq int64  `json:"acked_seq"`
	LastSeq  int64  `json:"last_seq"`
	Pending  int64  `json:"pending"`
}

// chatctlConn is one connection as `presence --json` and `connections --json` print it
// (user_id only in the latter).
type chatctlConn struct {
	UserID string `json:"user_id"`
	HostID string `json:"host_id"`
	ConnID string `json:"conn_id"`
}

// pendingOf runs `chatctl pending USER --json` and checks it is about u.
func pendingOf(t *testing.T, c *Cluster, u *User) ([]pendingThread, string) {
	t.Helper()
	raw := c.Chatctl(t, "pending", u.Username, "--json")
	var out pendingJSON
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("chatctl pending %s --json: %v: %s", u.Username, err, raw)
	}
	if out.User.ID != u.ID || out.User.Username != u.Username {
		t.Fatalf("chatctl pending %s --json is about user %+v, want %s (%s): %s", u.Username, out.User, u.Username, u.ID, raw)
	}
	return out.Threads, string(raw)
}

// checkPendingTable checks the table an operator reads without --json: its summary
// line, then one row per thread (THREAD NAME ACKED LAST PENDING), in want's order.
func checkPendingTable(t *testing.T, c *Cluster, u *User, want []pendingThread) {
	t.Helper()
	out := string(c.Chatctl(t, "pending", u.Username))
	var total int64
	for _, th := range want {
		total += th.Pending
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	plural := func(n int64) string {
		if n == 1 {
			return ""
		}
		return "s"
	}
	summary := fmt.Sprintf("user %s (%s): %d message%s not acked in %d thread%s", u.Username, u.ID, total, plural(total), len(want), plural(int64(len(want))))
	if len(lines) != 2+len(want) || lines[0] != summary || !reflect.DeepEqual(strings.Fields(lines[1]), []string{"THREAD", "NAME", "ACKED", "LAST", "PENDING"}) {
		t.Fatalf("chatctl pending %s, want the summary %q, the header and %d rows, got:\n%s", u.Username, summary, len(want), out)
	}
	for i, th := range want {
		row := []string{th.ThreadID, th.Name, fmt.Sprint(th.AckedSeq), fmt.Sprint(th.LastSeq), fmt.Sprint(th.Pending)}
		if got := strings.Fields(lines[2+i]); !reflect.DeepEqual(got, row) {
			t.Fatalf("chatctl pending %s, row %d is %q, want %q; the table:\n%s", u.Username, i+1, got, row, out)
		}
	}
}

// onlyConn checks that `chatctl presence USER --json` shows exactly one live
// connection, the one whose hello is given.
func onlyConn(t *testing.T, c *Cluster, u *User, hello Frame) error {
	raw := c.Chatctl(t, "presence", u.Username, "--json")
	var out struct {
		Connections []chatctlConn `json:"connections"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("chatctl presence %s --json: %v: %s", u.Username, err, raw)
	}
	want := []chatctlConn{{HostID: hello.HostID, ConnID: hello.ConnID}}
	if !reflect.DeepEqual(out.Connections, want) {
		return fmt.Errorf("chatctl presence %s shows %+v, want only the socket of hello %s", u.Username, out.Connections, hello.Raw)
	}
	return nil
}

// ackThenPending acks seq of threadID on dev and waits for `chatctl pending` to show
// want: an ack is durable within 1 s (contract, section 3).
func ackThenPending(t *testing.T, c *Cluster, dev *Client, u *User, threadID string, seq int64, want []pendingThread) {
	t.Helper()
	if err := dev.Ack(threadID, seq); err != nil {
		t.Fatal(err)
	}
	CheckFor(t, 3*time.Second, 100*time.Millisecond, func() error {
		if got, raw := pendingOf(t, c, u); !reflect.DeepEqual(got, want) {
			return fmt.Errorf("chatctl pending %s after an ack of seq %d on %s: %s", u.Username, seq, dev.HostID, raw)
		}
		return nil
	})
}

// TestChatctlPendingOnLiveHosts: what `chatctl` tells an operator about what running
// hosts wrote, rather than about rows a test seeded. bob's socket on h2 shows in
// `presence` and in h2's `connections` as its hello named it, and his ack through h2
// shows in `pending`. Then h2 is killed with SIGKILL and alice on h1 sends 3 messages:
// h1 records the missed hand-off for h2 in Redis, and `pending bob`, JSON and table,
// names the thread with bob acked at 1 of 4, 3 pending, and his other thread with
// none. It still does once bob's device holds the 3 again through the restarted h2,
// because pending counts acks, not deliveries; after his ack it shows 0 left, and
// presence shows only his new socket, not the entry of h2's killed instance.
func TestChatctlPendingOnLiveHosts(t *testing.T) {
	t.Parallel()
	c := StartCluster(t, 2, Options{})
	h1, h2 := c.Hosts[0], c.Hosts[1]
	alice := NewUser(t, h1, "alice")
	bob := NewUser(t, h2, "bob")
	ops := CreateThread(t, h1, alice, "ops", "bob")
	quiet := CreateThread(t, h1, alice, "quiet", "bob")
	a := DialSynced(t, h1, alice)
	b := DialSynced(t, h2, bob)

	// Presence is written as the socket opens; give it the moment the contract allows.
	CheckFor(t, 2*time.Second, 50*time.Millisecond, func() error { return onlyConn(t, c, bob, b.Hello) })
	raw := c.Chatctl(t, "connections", h2.ID, "--json")
	var conns struct {
		InternalURL string        `json:"internal_url"`
		Connections []chatctlConn `json:"connections"`
	}
	if err := json.Unmarshal(raw, &conns); err != nil {
		t.Fatalf("chatctl connections %s --json: %v: %s", h2.ID, err, raw)
	}
	if want := []chatctlConn{{UserID: bob.ID, HostID: h2.ID, ConnID: b.Hello.ConnID}}; conns.InternalURL != h2.InternalURL() || !reflect.DeepEqual(conns.Connections, want) {
		t.Fatalf("chatctl connections %s: %s, want %s's internal listener %s holding only bob's socket %+v", h2.ID, raw, h2.ID, h2.InternalURL(), want)
	}

	waitAllSent(t, a, sendAll(t, a, ops.ID, "pre", 1), 5*time.Second)
	waitSeqs(t, b, ops.ID, 1, 5*time.Second)
	ackThenPending(t, c, b, bob, ops.ID, 1, []pendingThread{
		{ThreadID: ops.ID, Name: "ops", AckedSeq: 1, LastSeq: 1},
		{ThreadID: quiet.ID, Name: "quiet"},
	})

	recorded := h1.Metric(t, `switchboard_handoffs_total{event="recorded"}`)
	h2.Kill(t)
	sent := waitAllSent(t, a, sendAll(t, a, ops.ID, "away", 3), 10*time.Second)
	// h2's heartbeat is still fresh, so h1 tries it and records the miss: bob's host
	// is unreachable, not known dead, which is the case pending must cover.
	CheckFor(t, 5*time.Second, 50*time.Millisecond, func() error {
		if got := h1.Metric(t, `switchboard_handoffs_total{event="recorded"}`); got <= recorded {
			return fmt.Errorf("h1 recorded no missed hand-off for the killed h2 (%v)", got)
		}
		return nil
	})
	behind := []pendingThread{
		{ThreadID: ops.ID, Name: "ops", AckedSeq: 1, LastSeq: 4, Pending: 3},
		{ThreadID: quiet.ID, Name: "quiet"},
	}
	if got, raw := pendingOf(t, c, bob); !reflect.DeepEqual(got, behind) {
		t.Fatalf("chatctl pending bob with h2 down after alice sent seqs 2..4: %s, want %+v", raw, behind)
	}
	checkPendingTable(t, c, bob, behind)

	h2.Restart(t)
	b2 := DialSynced(t, h2, bob)
	got := b2.Messages(ops.ID)
	if len(got) != 3 {
		t.Fatalf("bob's catch-up through the restarted h2 brought %d messages, want seqs 2..4", len(got))
	}
	for i, m := range got {
		if m.ID != sent[i].ID || m.Seq != int64(i+2) {
			t.Fatalf("bob's catch-up message %d is seq %d (%s), want seq %d (%s)", i, m.Seq, m.ID, i+2, sent[i].ID)
		}
	}
	if got, raw := pendingOf(t, c, bob); !reflect.DeepEqual(got, behind) {
		t.Fatalf("chatctl pending bob once his device holds seqs 2..4 but has not acked them: %s, want %+v", raw, behind)
	}

	caughtUp := []pendingThread{
		{ThreadID: ops.ID, Name: "ops", AckedSeq: 4, LastSeq: 4},
		{ThreadID: quiet.ID, Name: "quiet"},
	}
	ackThenPending(t, c, b2, bob, ops.ID, 4, caughtUp)
	checkPendingTable(t, c, bob, caughtUp)
	CheckFor(t, 2*time.Second, 50*time.Millisecond, func() error { return onlyConn(t, c, bob, b2.Hello) })
}
