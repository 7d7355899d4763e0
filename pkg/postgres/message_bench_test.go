package postgres_test

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/switchboard-chat/switchboard/pkg/chat"
	"github.com/switchboard-chat/switchboard/pkg/dbtest"
)

// BenchmarkCreateMessage measures the durable send on real PostgreSQL: one message per
// op, committed. "serial" is one sender's latency; "one-thread" is many senders queued
// on one thread's row lock (the worst case for a busy room); "many-threads" is the
// usual spread of senders over threads.
func BenchmarkCreateMessage(b *testing.B) {
	db := dbtest.NewDB(b)
	ctx := context.Background()
	var n atomic.Int64
	newUser := func() chat.User { return mustUser(b, db, fmt.Sprintf("u%06d", n.Add(1))) }
	// Ten members, so every send also reads a realistic member list.
	newThread := func() (chat.Thread, []chat.User) {
		members := make([]chat.User, 10)
		for i := range members {
			members[i] = newUser()
		}
		return mustThread(b, db, "bench", members[0], members[1:]...), members
	}
	body := "a message of a typical length, some sixty bytes or so, ok?"
	send := func(b *testing.B, threadID string, sender chat.User) {
		st, err := db.CreateMessage(ctx, chat.NewMessage{
			ThreadID: threadID, SenderID: sender.ID, ClientMsgID: strconv.FormatInt(n.Add(1), 10), Body: body,
		})
		if err != nil || !st.Created {
			b.Errorf("send: created %v, %v", st.Created, err)
		}
	}

	// Set up once: a sub-benchmark's body runs several times while b.N is probed.
	serialThread, serialMembers := newThread()
	hotThread, hotMembers := newThread()
	type seat struct {
		th chat.Thread
		me chat.User
	}
	seats := make([]seat, 64) // more than the goroutines RunParallel starts
	for i := range seats {
		th, members := newThread()
		seats[i] = seat{th, members[0]}
	}

	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			send(b, serialThread.ID, serialMembers[0])
		}
	})
	b.Run("one-thread", func(b *testing.B) {
		var next atomic.Int64
		b.ReportAllocs()
		b.SetParallelism(4)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			me := hotMembers[next.Add(1)%int64(len(hotMembers))]
			for pb.Next() {
				send(b, hotThread.ID, me)
			}
		})
	})
	b.Run("many-threads", func(b *testing.B) {
		var next atomic.Int64
		b.ReportAllocs()
		b.SetParallelism(4)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			s := seats[next.Add(1)-1]
			for pb.Next() {
				send(b, s.th.ID, s.me)
			}
		})
	})
}

// BenchmarkRepairMemberships is what a host's repair after another host's death asks
// of PostgreSQL for 1,500 connected users (3,000 sockets over two surviving hosts),
// each in two threads of ten: one Memberships query per user against MembershipsOf.
// One op is the whole host's lookup.
func BenchmarkRepairMemberships(b *testing.B) {
	db := dbtest.NewDB(b)
	ctx := context.Background()
	users := make([]chat.User, 1500)
	ids := make([]string, len(users))
	for i := range users {
		users[i] = mustUser(b, db, fmt.Sprintf("u%06d", i))
		ids[i] = users[i].ID
	}
	for i := 0; i+10 <= len(users); i += 5 { // overlapping groups: two threads a user
		mustThread(b, db, "bench", users[i], users[i+1:i+10]...)
	}
	b.Run("per-user", func(b *testing.B) {
		for b.Loop() {
			for _, id := range ids {
				if _, err := db.Memberships(ctx, id); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("batched", func(b *testing.B) {
		for b.Loop() {
			if _, err := db.MembershipsOf(ctx, ids); err != nil {
				b.Fatal(err)
			}
		}
	})
}
