package redis_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/switchboard-chat/switchboard/pkg/chat"
	"github.com/switchboard-chat/switchboard/pkg/redis"
)

func conn(user, host, id string, since time.Time) chat.Connection {
	return chat.Connection{UserID: user, HostID: host, ConnID: id, Since: since, Instance: "inst-" + host}
}

func TestPresence(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		run  func(t *testing.T, e env)
	}{
		{"add and look up several users", func(t *testing.T, e env) {
			now := e.Clock.Now()
			a1, a2 := conn("alice", "h1", "c1", now), conn("alice", "h2", "c2", now.Add(time.Second))
			b1 := conn("bob", "h1", "c3", now)
			if err := e.Store.AddConnections(t.Context(), []chat.Connection{a2, b1, a1}); err != nil {
				t.Fatal(err)
			}
			got, err := e.Store.Lookup(t.Context(), []string{"alice", "bob", "carol", "alice"})
			if err != nil {
				t.Fatal(err)
			}
			want := map[string][]chat.Connection{"alice": {a1, a2}, "bob": {b1}}
			if !equalConns(got, want) {
				t.Fatalf("got %+v\nwant %+v", got, want)
			}
		}},
		{"zero since becomes now", func(t *testing.T, e env) {
			c := conn("alice", "h1", "c1", time.Time{})
			if err := e.Store.AddConnections(t.Context(), []chat.Connection{c}); err != nil {
				t.Fatal(err)
			}
			got, err := e.Store.Lookup(t.Context(), []string{"alice"})
			if err != nil {
				t.Fatal(err)
			}
			if len(got["alice"]) != 1 || !got["alice"][0].Since.Equal(e.Clock.Now()) {
				t.Fatalf("got %+v, want since %v", got, e.Clock.Now())
			}
		}},
		{"stored shape", func(t *testing.T, e env) {
			c := conn("alice", "h1", "c1", e.Clock.Now())
			if err := e.Store.AddConnections(t.Context(), []chat.Connection{c}); err != nil {
				t.Fatal(err)
			}
			val, err := e.Client.HGet(t.Context(), e.Prefix+"presence:{alice}", "c1").Result()
			if err != nil {
				t.Fatal(err)
			}
			var fields map[string]any
			if err := json.Unmarshal([]byte(val), &fields); err != nil {
				t.Fatal(err)
			}
			if got, want := slices.Sorted(maps.Keys(fields)), []string{"conn_id", "host_id", "instance", "since"}; !slices.Equal(got, want) {
				t.Fatalf("fields %q, want %q", got, want)
			}
		}},
		{"remove, last seen when the last goes", func(t *testing.T, e env) {
			now := e.Clock.Now()
			a1, a2 := conn("alice", "h1", "c1", now), conn("alice", "h2", "c2", now)
			b1 := conn("bob", "h1", "c3", now)
			if err := e.Store.AddConnections(t.Context(), []chat.Connection{a1, a2, b1}); err != nil {
				t.Fatal(err)
			}
			e.Clock.Advance(time.Minute)
			if err := e.Store.RemoveConnections(t.Context(), []chat.Connection{a1, b1}); err != nil {
				t.Fatal(err)
			}
			seen, err := e.Store.LastSeen(t.Context(), []string{"alice", "bob"})
			if err != nil {
				t.Fatal(err)
			}
			if want := map[string]time.Time{"bob": now.Add(time.Minute)}; !maps.EqualFunc(seen, want, time.Time.Equal) {
				t.Fatalf("last seen %v, want %v", seen, want)
			}
			got, err := e.Store.Lookup(t.Context(), []string{"alice", "bob"})
			if err != nil {
				t.Fatal(err)
			}
			if want := map[string][]chat.Connection{"alice": {a2}}; !equalConns(got, want) {
				t.Fatalf("got %+v, want %+v", got, want)
			}

			e.Clock.Advance(time.Minute)
			if err := e.Store.RemoveConnections(t.Context(), []chat.Connection{a2}); err != nil {
				t.Fatal(err)
			}
			e.Clock.Advance(time.Minute) // removing again changes nothing
			if err := e.Store.RemoveConnections(t.Context(), []chat.Connection{a2, b1}); err != nil {
				t.Fatal(err)
			}
			seen, err = e.Store.LastSeen(t.Context(), []string{"alice", "bob", "carol"})
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]time.Time{"alice": now.Add(2 * time.Minute), "bob": now.Add(time.Minute)}
			if !maps.EqualFunc(seen, want, time.Time.Equal) {
				t.Fatalf("last seen %v, want %v", seen, want)
			}
			ttl, err := e.Client.TTL(t.Context(), e.Prefix+"lastseen:{alice}").Result()
			if err != nil || ttl < redis.LastSeenTTL-time.Minute || ttl > redis.LastSeenTTL {
				t.Fatalf("last seen ttl %v, %v; want about %v", ttl, err, redis.LastSeenTTL)
			}
			if n, _ := e.Client.Exists(t.Context(), e.Prefix+"presence:{alice}").Result(); n != 0 {
				t.Fatal("empty presence hash left behind")
			}
			// Contract section 6: values in Redis are JSON, this one a string.
			raw, err := e.Client.Get(t.Context(), e.Prefix+"lastseen:{alice}").Result()
			var at time.Time
			if err != nil || json.Unmarshal([]byte(raw), &at) != nil || !at.Equal(now.Add(2*time.Minute)) {
				t.Fatalf("lastseen:{alice} holds %q (%v): want the time as a JSON string", raw, err)
			}
			// A value written bare, before it was JSON, is still read.
			if err := e.Client.Set(t.Context(), e.Prefix+"lastseen:{carol}", now.Format(time.RFC3339Nano), time.Hour).Err(); err != nil {
				t.Fatal(err)
			}
			if seen, err := e.Store.LastSeen(t.Context(), []string{"carol"}); err != nil || !seen["carol"].Equal(now) {
				t.Fatalf("bare last seen read as %v, %v", seen, err)
			}
		}},
		{"undecodable entries are skipped", func(t *testing.T, e env) {
			c := conn("alice", "h1", "c1", e.Clock.Now())
			if err := e.Store.AddConnections(t.Context(), []chat.Connection{c}); err != nil {
				t.Fatal(err)
			}
			if err := e.Client.HSet(t.Context(), e.Prefix+"presence:{alice}", "junk", "{not json").Err(); err != nil {
				t.Fatal(err)
			}
			if err := e.Client.HSet(t.Context(), e.Prefix+"presence:{bob}", "junk", "[]").Err(); err != nil {
				t.Fatal(err)
			}
			got, err := e.Store.Lookup(t.Context(), []string{"alice", "bob"})
			if err != nil {
				t.Fatal(err)
			}
			if want := map[string][]chat.Connection{"alice": {c}}; !equalConns(got, want) {
				t.Fatalf("got %+v, want %+v", got, want)
			}
		}},
		{"empty input", func(t *testing.T, e env) {
			if err := e.Store.AddConnections(t.Context(), nil); err != nil {
				t.Fatal(err)
			}
			if err := e.Store.RemoveConnections(t.Context(), nil); err != nil {
				t.Fatal(err)
			}
			got, err := e.Store.Lookup(t.Context(), nil)
			if err != nil || len(got) != 0 {
				t.Fatalf("Lookup(nil) = %v, %v", got, err)
			}
			seen, err := e.Store.LastSeen(t.Context(), nil)
			if err != nil || len(seen) != 0 {
				t.Fatalf("LastSeen(nil) = %v, %v", seen, err)
			}
		}},
		{"invalid entry", func(t *testing.T, e env) {
			if err := e.Store.AddConnections(t.Context(), []chat.Connection{{UserID: "alice", HostID: "h1"}}); err == nil {
				t.Fatal("no error for an entry without conn id")
			}
		}},
		{"many in several pipelines", func(t *testing.T, e env) {
			var conns []chat.Connection
			var users []string
			for i := range 1500 {
				u := fmt.Sprintf("u%d", i)
				users = append(users, u)
				conns = append(conns, conn(u, "h1", "c"+u, e.Clock.Now()))
			}
			if err := e.Store.AddConnections(t.Context(), conns); err != nil {
				t.Fatal(err)
			}
			got, err := e.Store.Lookup(t.Context(), users)
			if err != nil || len(got) != len(users) {
				t.Fatalf("looked up %d of %d users: %v", len(got), len(users), err)
			}
			if err := e.Store.RemoveConnections(t.Context(), conns); err != nil {
				t.Fatal(err)
			}
			seen, err := e.Store.LastSeen(t.Context(), users)
			if err != nil || len(seen) != len(users) {
				t.Fatalf("last seen of %d of %d users: %v", len(seen), len(users), err)
			}
		}},
		{"events", func(t *testing.T, e env) {
			events, stop := e.Store.SubscribeEvents(t.Context())
			defer stop()
			c := conn("alice", "h1", "c1", e.Clock.Now())
			if err := e.Store.AddConnections(t.Context(), []chat.Connection{c}); err != nil {
				t.Fatal(err)
			}
			if err := e.Store.RemoveConnections(t.Context(), []chat.Connection{c}); err != nil {
				t.Fatal(err)
			}
			for _, typ := range []string{redis.EventConnect, redis.EventDisconnect} {
				select {
				case ev := <-events:
					want := redis.Event{Type: typ, HostID: "h1", UserID: "alice", ConnID: "c1", At: e.Clock.Now()}
					if ev.Type != want.Type || ev.HostID != want.HostID || ev.UserID != want.UserID ||
						ev.ConnID != want.ConnID || !ev.At.Equal(want.At) {
						t.Fatalf("got %+v, want %+v", ev, want)
					}
				case <-time.After(5 * time.Second):
					t.Fatalf("no %s event", typ)
				}
			}
			stop()
			if _, ok := <-events; ok {
				t.Fatal("channel open after stop")
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

// equalConns compares presence maps, times with Equal.
func equalConns(a, b map[string][]chat.Connection) bool {
	return maps.EqualFunc(a, b, func(x, y []chat.Connection) bool {
		return slices.EqualFunc(x, y, func(p, q chat.Connection) bool {
			return p.UserID == q.UserID && p.HostID == q.HostID && p.ConnID == q.ConnID &&
				p.Instance == q.Instance && p.Since.Equal(q.Since)
		})
	})
}
