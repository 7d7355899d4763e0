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
