package redis_test

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-chat/switchboard/pkg/chat"
	"github.com/switchboard-chat/switchboard/pkg/redis"
)

const hbTTL = 10 * time.Second

func host(id, instance string) chat.Host {
	return chat.Host{HostID: id, InternalURL: "http://" + id + ":9080", Instance: instance, StartedAt: epoch}
}

func TestHeartbeat(t *testing.T) {
	t.Parallel()
	type step struct {
		advance   time.Duration
		host      chat.Host
		wantFresh bool
		wantCode  string // "" for success
	}
	tests := []struct {
		name  string
		steps []step
		// wantInstance is the instance registered for h1 at the end.
		wantInstance string
	}{
		{"first claim is fresh", []step{
			{host: host("h1", "a"), wantFresh: true},
		}, "a"},
		{"refresh is not fresh", []step{
			{host: host("h1", "a"), wantFresh: true},
			{advance: time.Second, host: host("h1", "a")},
			{advance: hbTTL - time.Millisecond, host: host("h1", "a")},
		}, "a"},
		{"taken by another live instance", []step{
			{host: host("h1", "a"), wantFresh: true},
			{advance: hbTTL - time.Millisecond, host: host("h1", "b"), wantCode: chat.EHostIDTaken},
			{host: host("h1", "a")},
		}, "a"},
		{"takeover of a stale instance", []step{
			{host: host("h1", "a"), wantFresh: true},
			{advance: hbTTL, host: host("h1", "b"), wantFresh: true},
			{advance: time.Second, host: host("h1", "b")},
			{host: host("h1", "a"), wantCode: chat.EHostIDTaken},
		}, "b"},
		{"own stale registration is fresh", []step{
			{host: host("h1", "a"), wantFresh: true},
			{advance: hbTTL, host: host("h1", "a"), wantFresh: true},
		}, "a"},
		{"other hosts do not interfere", []step{
			{host: host("h1", "a"), wantFresh: true},
			{host: host("h2", "b"), wantFresh: true},
			{advance: time.Second, host: host("h1", "a")},
		}, "a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			forEachBackend(t, func(t *testing.T, e env) {
				for i, s := range tt.steps {
					e.Clock.Advance(s.advance)
					fresh, err := e.Store.Heartbeat(t.Context(), s.host, hbTTL)
					if code := chat.ErrorCode(err); code != s.wantCode {
						t.Fatalf("step %d: err %v, want code %q", i, err, s.wantCode)
					}
					if fresh != s.wantFresh {
						t.Fatalf("step %d: fresh %v, want %v", i, fresh, s.wantFresh)
					}
				}
				hosts, err := e.Store.Hosts(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				i := slices.IndexFunc(hosts, func(h chat.Host) bool { return h.HostID == "h1" })
				if i < 0 {
					t.Fatalf("h1 not in %+v", hosts)
				}
				if h := hosts[i]; h.Instance != tt.wantInstance || h.InternalURL != "http://h1:9080" || !h.StartedAt.Equal(epoch) {
					t.Fatalf("h1 = %+v, want instance %q", h, tt.wantInstance)
				}
			})
		})
	}
}

func TestHosts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		run  func(t *testing.T, e env)
	}{
		{"list, stamped with the store's clock", func(t *testing.T, e env) {
			for _, id := range []string{"h2", "h1"} {
				if _, err := e.Store.Heartbeat(t.Context(), host(id, "x"), hbTTL); err != nil {
					t.Fatal(err)
				}
				e.Clock.Advance(time.Second)
			}
			hosts, err := e.Store.Hosts(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if len(hosts) != 2 || hosts[0].HostID != "h1" || hosts[1].HostID != "h2" {
				t.Fatalf("hosts %+v", hosts)
			}
			if !hosts[0].LastHeartbeat.Equal(epoch.Add(time.Second)) || !hosts[1].LastHeartbeat.Equal(epoch) {
				t.Fatalf("heartbeats %v, %v", hosts[0].LastHeartbeat, hosts[1].LastHeartbeat)
			}
			raw, err := e.Client.HGet(t.Context(), e.Prefix+"hosts", "h1").Result()
			if err != nil {
				t.Fatal(err)
			}
			var v struct {
				HBMs int64 `json:"hb_ms"`
			}
			if err := json.Unmarshal([]byte(raw), &v); err != nil || v.HBMs != epoch.Add(time.Second).UnixMilli() {
				t.Fatalf("raw %s: hb_ms %d, %v", raw, v.HBMs, err)
			}
		}},
		{"remove", func(t *testing.T, e env) {
			if _, err := e.Store.Heartbeat(t.Context(), host("h1", "a"), hbTTL); err != nil {
				t.Fatal(err)
			}
			for range 2 {
				if err := e.Store.RemoveHost(t.Context(), "h1"); err != nil {
					t.Fatal(err)
				}
			}
			if hosts, err := e.Store.Hosts(t.Context()); err != nil || len(hosts) != 0 {
				t.Fatalf("hosts %+v, %v", hosts, err)
			}
			fresh, err := e.Store.Heartbeat(t.Context(), host("h1", "a"), hbTTL)
			if err != nil || !fresh {
				t.Fatalf("heartbeat after remove: fresh %v, %v; want fresh", fresh, err)
			}
		}},
		{"redis lost its data", func(t *testing.T, e env) {
			if _, err := e.Store.Heartbeat(t.Context(), host("h1", "a"), hbTTL); err != nil {
				t.Fatal(err)
			}
			if err := e.Client.Del(t.Context(), e.Prefix+"hosts").Err(); err != nil {
				t.Fatal(err)
			}
			fresh, err := e.Store.Heartbeat(t.Context(), host("h1", "a"), hbTTL)
			if err != nil || !fresh {
				t.Fatalf("fresh %v, %v; want fresh", fresh, err)
			}
		}},
		{"prune", func(t *testing.T, e env) {
			for _, id := range []string{"old", "older"} {
				if _, err := e.Store.Heartbeat(t.Context(), host(id, "x"), hbTTL); err != nil {
					t.Fatal(err)
				}
			}
			e.Clock.Advance(time.Minute)
			if _, err := e.Store.Heartbeat(t.Context(), host("live", "x"), hbTTL); err != nil {
				t.Fatal(err)
			}
			if err := e.Client.HSet(t.Context(), e.Prefix+"hosts", "junk", "nope").Err(); err != nil {
				t.Fatal(err)
			}
			hosts, err := e.Store.Hosts(t.Context())
			if err != nil || len(hosts) != 3 {
				t.Fatalf("hosts %+v, %v; want 3 (junk skipped)", hosts, err)
			}
			events, stop := e.Store.SubscribeEvents(t.Context())
			defer stop()
			removed, err := e.Store.PruneHosts(t.Context(), time.Minute-time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			slices.Sort(removed)
			if want := []string{"junk", "old", "older"}; !slices.Equal(removed, want) {
				t.Fatalf("removed %q, want %q", removed, want)
			}
			hosts, err = e.Store.Hosts(t.Context())
			if err != nil || len(hosts) != 1 || hosts[0].HostID != "live" {
				t.Fatalf("hosts %+v, %v; want live only", hosts, err)
			}
			for range removed {
				select {
				case ev := <-events:
					if ev.Type != redis.EventHostDown {
						t.Fatalf("event %+v, want host_down", ev)
					}
				case <-time.After(5 * time.Second):
					t.Fatal("no host_down event")
				}
			}
		}},
		{"invalid", func(t *testing.T, e env) {
			if _, err := e.Store.Heartbeat(t.Context(), host("h1", ""), hbTTL); err == nil {
				t.Fatal("no error without instance")
			}
			if _, err := e.Store.Heartbeat(t.Context(), host("h1", "a"), 0); err == nil {
				t.Fatal("no error for ttl 0")
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			forEachBackend(t, tt.run)
		})
	}
}

func TestHandoff(t *testing.T) {
	t.Parallel()
	type add struct {
		host, thread string
		seq          int64
	}
	tests := []struct {
		name string
		adds []add
		want map[string]int64 // for host h1
	}{
		{"keeps the max per thread", []add{{"h1", "t1", 5}, {"h1", "t1", 3}, {"h1", "t1", 7}, {"h1", "t2", 2}, {"h2", "t1", 9}},
			map[string]int64{"t1": 7, "t2": 2}},
		{"none", nil, map[string]int64{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			forEachBackend(t, func(t *testing.T, e env) {
				for _, a := range tt.adds {
					if err := e.Store.AddHandoff(t.Context(), a.host, a.thread, a.seq); err != nil {
						t.Fatal(err)
					}
				}
				if len(tt.adds) > 0 {
					ttl, err := e.Client.TTL(t.Context(), e.Prefix+"handoff:h1").Result()
					if err != nil || ttl <= redis.HandoffTTL-time.Minute || ttl > redis.HandoffTTL {
						t.Fatalf("ttl %v, %v; want about %v", ttl, err, redis.HandoffTTL)
					}
				}
				got, err := e.Store.TakeHandoffs(t.Context(), "h1")
				if err != nil {
					t.Fatal(err)
				}
				if !maps.Equal(got, tt.want) {
					t.Fatalf("took %v, want %v", got, tt.want)
				}
				again, err := e.Store.TakeHandoffs(t.Context(), "h1")
				if err != nil || len(again) != 0 {
					t.Fatalf("second take %v, %v; want nothing", again, err)
				}
			})
		})
	}
}

// TestDisconnectRecords: a host takes exactly the disconnects recorded for it, each
// once (a logout repeated for the same session is one record), as readable JSON, and
// an invalid record is refused before anything is written.
func TestDisconnectRecords(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, e env) {
		ctx := t.Context()
		adds := []struct {
			host string
			d    chat.Disconnect
		}{
			{"h1", chat.Disconnect{SessionHash: "s1"}},
			{"h1", chat.Disconnect{SessionHash: "s1"}},
			{"h1", chat.Disconnect{UserID: "u1"}},
			{"h2", chat.Disconnect{SessionHash: "s2"}},
		}
		for _, a := range adds {
			if err := e.Store.AddDisconnect(ctx, a.host, a.d); err != nil {
				t.Fatal(err)
			}
		}
		for _, bad := range []chat.Disconnect{{}, {SessionHash: "s", UserID: "u"}} {
			if err := e.Store.AddDisconnect(ctx, "h3", bad); err == nil {
				t.Errorf("AddDisconnect(%+v) = nil, want an error", bad)
			}
		}
		if n, _ := e.Client.Exists(ctx, e.Prefix+"disconnect:h3").Result(); n != 0 {
			t.Errorf("an invalid record wrote disconnect:h3")
		}
		ttl, err := e.Client.TTL(ctx, e.Prefix+"disconnect:h1").Result()
		if err != nil || ttl <= redis.HandoffTTL-time.Minute || ttl > redis.HandoffTTL {
			t.Fatalf("ttl %v, %v; want about %v", ttl, err, redis.HandoffTTL)
		}
		raw, err := e.Client.SMembers(ctx, e.Prefix+"disconnect:h1").Result()
		slices.Sort(raw)
		if err != nil || !slices.Equal(raw, []string{`{"session_hash":"s1"}`, `{"user_id":"u1"}`}) {
			t.Fatalf("disconnect:h1 holds %q, %v; want the two records as JSON", raw, err)
		}
		got, err := e.Store.TakeDisconnects(ctx, "h1")
		if err != nil {
			t.Fatal(err)
		}
		slices.SortFunc(got, func(a, b chat.Disconnect) int { return strings.Compare(a.SessionHash+a.UserID, b.SessionHash+b.UserID) })
		if want := []chat.Disconnect{{SessionHash: "s1"}, {UserID: "u1"}}; !slices.Equal(got, want) {
			t.Fatalf("h1 took %+v, want %+v", got, want)
		}
		if again, err := e.Store.TakeDisconnects(ctx, "h1"); err != nil || len(again) != 0 {
			t.Fatalf("second take %+v, %v; want nothing", again, err)
		}
		if other, err := e.Store.TakeDisconnects(ctx, "h2"); err != nil || !slices.Equal(other, []chat.Disconnect{{SessionHash: "s2"}}) {
			t.Fatalf("h2 took %+v, %v; want its own record", other, err)
		}
	})
}
