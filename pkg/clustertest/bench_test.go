package clustertest

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	gormpg "gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/switchboard-chat/switchboard/pkg/chat"
	"github.com/switchboard-chat/switchboard/pkg/dbtest"
	"github.com/switchboard-chat/switchboard/pkg/redis"
)

// BenchmarkCrossHostLatency measures send-to-receive latency of a one-to-one message
// across hosts: alice on h1 sends b.N messages at a modest, steady rate (one every
// 5 ms); bob on h2 receives them. Both clocks are the test process's, so the numbers
// are exact. It reports the median, p99 and max of send-to-receive and of
// send-to-`sent`, and the hosts' own per-stage averages (store = the Postgres
// transaction, presence = the Redis lookup, remote = the call to h2). Run it with a
// fixed count:
//
//	go test -run '^$' -bench CrossHostLatency -benchtime 2000x ./pkg/clustertest
func BenchmarkCrossHostLatency(b *testing.B) {
	c := StartCluster(b, 2, Options{})
	h1, h2 := c.Hosts[0], c.Hosts[1]
	alice := NewUser(b, h1, "alice")
	bob := NewUser(b, h2, "bob")
	th := CreateThread(b, h1, alice, "latency", "bob")
	a := DialSynced(b, h1, alice)
	r := DialSynced(b, h2, bob)
	CheckFor(b, 5*time.Second, 20*time.Millisecond, func() error {
		if !Presence(b, h1, alice, bob.ID)[bob.ID] {
			return fmt.Errorf("h1 does not see bob yet")
		}
		return nil
	})
	// Warm the connections and pools.
	waitAllSent(b, a, sendAll(b, a, th.ID, "warm", 50), 10*time.Second)
	waitSeqs(b, r, th.ID, 50, 10*time.Second)
	before := stageTotals(b, h1)

	ids := make([]string, b.N)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	b.ResetTimer()
	for i := range ids {
		<-tick.C
		ids[i] = fmt.Sprintf("lat%06d", i)
		if err := a.Send(th.ID, ids[i], "ping"); err != nil {
			b.Fatal(err)
		}
	}
	waitSeqs(b, r, th.ID, 50+b.N, 30*time.Second)
	b.StopTimer()

	got := arrivals(r)
	sent := map[string]time.Time{}
	for _, f := range a.Frames() {
		if f.Type == "sent" {
			sent[f.ClientMsgID] = f.At
		}
	}
	byClient := map[string]string{}
	for _, m := range r.Messages(th.ID) {
		byClient[m.ClientMsgID] = m.ID
	}
	var recv, ack []time.Duration
	for _, id := range ids {
		at := a.SentAt(id)
		recv = append(recv, got[byClient[id]].Sub(at))
		ack = append(ack, sent[id].Sub(at))
	}
	slices.Sort(recv)
	slices.Sort(ack)
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
	b.ReportMetric(us(percentile(recv, .5)), "recv-p50-µs")
	b.ReportMetric(us(percentile(recv, .99)), "recv-p99-µs")
	b.ReportMetric(us(recv[len(recv)-1]), "recv-max-µs")
	b.ReportMetric(us(percentile(ack, .5)), "sent-p50-µs")
	b.ReportMetric(us(percentile(ack, .99)), "sent-p99-µs")
	after := stageTotals(b, h1)
	for _, stage := range []string{"store", "presence", "local", "remote"} {
		n := after[stage+"_count"] - before[stage+"_count"]
		if n > 0 {
			b.ReportMetric((after[stage+"_sum"]-before[stage+"_sum"])/n*1e6, stage+"-avg-µs")
		}
	}
}

// stageTotals reads the sum and count of each stage of switchboard_send_stage_seconds.
func stageTotals(tb testing.TB, h *Host) map[string]float64 {
	tb.Helper()
	out := map[string]float64{}
	for _, stage := range []string{"store", "presence", "local", "remote"} {
		out[stage+"_sum"] = h.Metric(tb, fmt.Sprintf(`switchboard_send_stage_seconds_sum{stage=%q}`, stage))
		out[stage+"_count"] = h.Metric(tb, fmt.Sprintf(`switchboard_send_stage_seconds_count{stage=%q}`, stage))
	}
	return out
}

// BenchmarkRedisRoundTrip is the raw cost of one Redis round trip on this machine
// (PING), and of the presence lookup the send path makes (one pipeline of HGETALL for
// three users), for comparison with the cross-host latency.
func BenchmarkRedisRoundTrip(b *testing.B) {
	client, prefix := dbtest.NewRedis(b)
	ctx := context.Background()
	b.Run("ping", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if err := client.Ping(ctx).Err(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("presence-lookup-3-users", func(b *testing.B) {
		store := redis.New(client, redis.Config{Prefix: prefix}, nil)
		users := []string{chat.NewID(), chat.NewID(), chat.NewID()}
		var conns []chat.Connection
		for _, u := range users {
			conns = append(conns, chat.Connection{UserID: u, HostID: "h1", ConnID: chat.NewID(), Instance: "i"})
		}
		if err := store.AddConnections(ctx, conns); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := store.Lookup(ctx, users); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkPostgresInsert is the raw cost of one committed single-row INSERT on this
// machine, and of the send path's whole store step (CreateMessage: next seq under the
// thread's lock, members, insert, read mark, commit), for comparison.
func BenchmarkPostgresInsert(b *testing.B) {
	ctx := context.Background()
	b.Run("raw-insert", func(b *testing.B) {
		gdb, err := gorm.Open(gormpg.Open(dbtest.NewDatabaseURL(b)), &gorm.Config{Logger: logger.Discard})
		if err != nil {
			b.Fatal(err)
		}
		sqlDB, err := gdb.DB()
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = sqlDB.Close() })
		if err := gdb.WithContext(ctx).Exec(`CREATE TABLE bench (id bigserial PRIMARY KEY, body text NOT NULL)`).Error; err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if err := gdb.WithContext(ctx).Exec(`INSERT INTO bench (body) VALUES (?)`, "ping").Error; err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("create-message", func(b *testing.B) {
		db := dbtest.NewDB(b)
		u1, err := db.CreateUser(ctx, "alice", "x")
		if err != nil {
			b.Fatal(err)
		}
		u2, err := db.CreateUser(ctx, "bob", "x")
		if err != nil {
			b.Fatal(err)
		}
		th, err := db.CreateThread(ctx, chat.NewThread{Name: "bench", CreatedBy: u1.ID, MemberIDs: []string{u1.ID, u2.ID}})
		if err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := db.CreateMessage(ctx, chat.NewMessage{ThreadID: th.ID, SenderID: u1.ID, ClientMsgID: fmt.Sprintf("b%d", i), Body: "ping"}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
