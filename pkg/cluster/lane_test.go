package cluster_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-chat/switchboard/pkg/chat"
	"github.com/switchboard-chat/switchboard/pkg/cluster"
	"github.com/switchboard-chat/switchboard/pkg/metrics"
)

const laneSecret = "0123456789abcdef0123456789abcdef"

// recordingHub records the messages it is handed, in order, and answers delivered for
// every connection id but "gone". With gate set, every call waits for it first.
type recordingHub struct {
	countingHub
	mu    sync.Mutex
	got   []string // message client ids, in the order delivered
	calls atomic.Int32
	gate  chan struct{}
}

func (h *recordingHub) DeliverMessage(_ context.Context, m *chat.Message, rs []chat.Recipient, _ string) []chat.DeliveryResult {
	h.calls.Add(1)
	if h.gate != nil {
		<-h.gate
	}
	h.mu.Lock()
	h.got = append(h.got, m.ClientMsgID)
	h.mu.Unlock()
	var out []chat.DeliveryResult
	for _, r := range rs {
		for _, id := range r.ConnIDs {
			st := chat.StatusDelivered
			if id == "gone" {
				st = chat.StatusNotConnected
			}
			out = append(out, chat.DeliveryResult{UserID: r.UserID, ConnID: id, Status: st})
		}
	}
	return out
}

func (h *recordingHub) delivered() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.got...)
}

func postDeliver(t *testing.T, h http.Handler, body string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, cluster.PathDeliver, strings.NewReader(body))
	cluster.NewSigner(laneSecret).SignRequest(req, []byte(body))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

func messageJSON(t *testing.T, clientMsgID string) string {
	t.Helper()
	b, err := json.Marshal(chat.Message{ID: chat.NewID(), ThreadID: chat.NewID(), Seq: 1, SenderID: chat.NewID(), ClientMsgID: clientMsgID, Body: "hi", CreatedAt: time.Now().UTC()})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The batch form of a deliver call hands every message to the hub in order and answers
// each with its own results, in order; one bad item rejects the whole call before any
// socket is written.
func TestDeliverBatchForm(t *testing.T) {
	hub := &recordingHub{}
	h := cluster.NewInternalHandler(hub, cluster.NewSigner(laneSecret), false, slog.New(slog.DiscardHandler))
	m1, m2 := messageJSON(t, "m1"), messageJSON(t, "m2")
	// The second item is spaced the way another client might write it.
	body := `{"batch":[{"message":` + m1 + `,"recipients":[{"user_id":"u1","conn_ids":["c1"]}]},` +
		`{ "recipients" : [ {"user_id":"u2","conn_ids":["c2","gone"]} ], "message" : ` + m2 + ` }]}`
	w := postDeliver(t, h, body)
	if w.Code != http.StatusOK {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	var answer struct {
		Batch []struct {
			Results []chat.DeliveryResult `json:"results"`
		} `json:"batch"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &answer); err != nil {
		t.Fatalf("answer %s: %v", w.Body, err)
	}
	want := [][]chat.DeliveryResult{
		{{UserID: "u1", ConnID: "c1", Status: chat.StatusDelivered}},
		{{UserID: "u2", ConnID: "c2", Status: chat.StatusDelivered}, {UserID: "u2", ConnID: "gone", Status: chat.StatusNotConnected}},
	}
	if len(answer.Batch) != len(want) {
		t.Fatalf("answer %s: %d results lists, want %d", w.Body, len(answer.Batch), len(want))
	}
	for i := range want {
		if !equalResults(answer.Batch[i].Results, want[i]) {
			t.Errorf("item %d answered %+v, want %+v", i, answer.Batch[i].Results, want[i])
		}
	}
	if got := hub.delivered(); strings.Join(got, ",") != "m1,m2" {
		t.Fatalf("hub got %v, want [m1 m2]", got)
	}

	// A single message keeps the single form, answered without "batch".
	w = postDeliver(t, h, `{"message":`+m1+`,"recipients":[{"user_id":"u1","conn_ids":["c1"]}]}`)
	if w.Code != http.StatusOK || !strings.HasPrefix(w.Body.String(), `{"results":[`) {
		t.Fatalf("single form: %d %s", w.Code, w.Body)
	}

	before := len(hub.delivered())
	for name, bad := range map[string]string{
		"an item with neither message nor typing": `{"batch":[{"message":` + m1 + `,"recipients":[]},{"recipients":[]}]}`,
		"an empty batch":             `{"batch":[]}`,
		"a batch that is not a list": `{"batch":{"message":` + m1 + `}}`,
		"a truncated batch":          `{"batch":[{"message":` + m1 + `,"recipients":[]}`,
	} {
		w := postDeliver(t, h, bad)
		if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), `"invalid_request"`) {
			t.Errorf("%s: %d %s, want 400 invalid_request", name, w.Code, w.Body)
		}
	}
	if got := hub.delivered(); len(got) != before {
		t.Errorf("rejected batches delivered %v", got[before:])
	}
}

func equalResults(a, b []chat.DeliveryResult) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// onHost is a presence store that puts every user on one host.
type onHost struct {
	chat.PresenceStore
	host chat.Host
}

func (p onHost) Lookup(_ context.Context, users []string) (map[string][]chat.Connection, error) {
	out := map[string][]chat.Connection{}
	for _, u := range users {
		out[u] = []chat.Connection{{UserID: u, HostID: p.host.HostID, Instance: p.host.Instance, ConnID: "c-" + u}}
	}
	return out, nil
}

func (p onHost) RemoveConnections(context.Context, []chat.Connection) error { return nil }
func (p onHost) AddHandoff(context.Context, string, string, int64) error    { return nil }

// Messages bound for a host while a call to it is in flight share the next call, when
// the host registered that it takes batches; otherwise each gets its own call. Either
// way every message reaches the host once, in order per sender, and is answered.
func TestConcurrentDeliveriesShareACall(t *testing.T) {
	for _, batches := range []bool{true, false} {
		t.Run(map[bool]string{true: "host takes batches", false: "host does not"}[batches], func(t *testing.T) {
			hub := &recordingHub{gate: make(chan struct{})}
			var requests atomic.Int32
			inner := cluster.NewInternalHandler(hub, cluster.NewSigner(laneSecret), false, slog.New(slog.DiscardHandler))
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				requests.Add(1)
				inner.ServeHTTP(w, r)
			}))
			defer srv.Close()

			now := time.Now()
			self := chat.Host{HostID: "a", InternalURL: "http://127.0.0.1:1", Instance: "ia", LastHeartbeat: now, DeliverBatch: true}
			b := chat.Host{HostID: "b", InternalURL: srv.URL, Instance: "ib", LastHeartbeat: now, DeliverBatch: batches}
			dir := cluster.NewDirectory(self, time.Minute)
			dir.Update([]chat.Host{self, b})
			m := metrics.New()
			d := cluster.NewDeliverer(cluster.DelivererConfig{HostID: "a", Timeout: 5 * time.Second}, &countingHub{}, onHost{host: b}, dir,
				cluster.NewSigner(laneSecret), m, slog.New(slog.DiscardHandler))
			defer d.Close(context.Background())

			send := func(wg *sync.WaitGroup, id string) {
				defer wg.Done()
				d.DeliverMessage(context.Background(), chat.Stored{Created: true, Members: []string{"u-" + id},
					Message: chat.Message{ID: chat.NewID(), ThreadID: chat.NewID(), Seq: 1, SenderID: chat.NewID(), ClientMsgID: id, Body: "x"}}, "")
			}
			var wg sync.WaitGroup
			wg.Add(1)
			go send(&wg, "first")
			waitFor(t, func() bool { return hub.calls.Load() == 1 }, "the first call to reach the hub")
			const more = 5
			for i := range more {
				wg.Add(1)
				go send(&wg, string(rune('p'+i)))
			}
			if batches {
				// The five wait in the lane behind the call in flight.
				time.Sleep(50 * time.Millisecond)
				if n := requests.Load(); n != 1 {
					t.Fatalf("%d requests while the first is in flight, want 1", n)
				}
			} else {
				waitFor(t, func() bool { return requests.Load() == 1+more }, "a request per message")
			}
			close(hub.gate)
			wg.Wait()
			wantRequests := int32(1 + more)
			if batches {
				wantRequests = 2
			}
			if n := requests.Load(); n != wantRequests {
				t.Errorf("%d requests for %d messages, want %d", n, 1+more, wantRequests)
			}
			got := hub.delivered()
			slices.Sort(got[1:])
			if batches && !slices.Equal(got, []string{"first", "p", "q", "r", "s", "t"}) {
				t.Errorf("host got %v, want first and then the other %d once each", got, more)
			}
			if slices.Sort(got); !batches && !slices.Equal(got, []string{"first", "p", "q", "r", "s", "t"}) {
				t.Errorf("host got %v, want each of the %d once", got, 1+more)
			}
			if got := deliveries(t, m, "remote"); got != 1+more {
				t.Errorf("%v deliveries answered delivered, want %d", got, 1+more)
			}
		})
	}
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// deliveries reads switchboard_deliveries_total{result}.
func deliveries(t *testing.T, m *metrics.Metrics, result string) float64 {
	t.Helper()
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "switchboard_deliveries_total" {
			continue
		}
		for _, mt := range f.GetMetric() {
			for _, l := range mt.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return mt.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}
