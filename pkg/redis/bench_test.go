package redis_test

import (
	"fmt"
	"testing"

	"github.com/switchboard-chat/switchboard/pkg/chat"
	"github.com/switchboard-chat/switchboard/pkg/dbtest"
)

// BenchmarkLookup100 is the presence lookup of a message to a 100-member thread: 100
// users, most with one or two connections, some offline, on real Redis.
func BenchmarkLookup100(b *testing.B) {
	s := dbtest.NewRedisStore(b)
	users := make([]string, 100)
	var conns []chat.Connection
	for i := range users {
		users[i] = chat.NewID()
		for j := range i % 3 { // a third offline, a third with one, a third with two
			conns = append(conns, chat.Connection{
				UserID: users[i], HostID: fmt.Sprintf("host-%d", (i+j)%3), ConnID: chat.NewID(), Instance: "i1",
			})
		}
	}
	if err := s.AddConnections(b.Context(), conns); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		got, err := s.Lookup(b.Context(), users)
		if err != nil {
			b.Fatal(err)
		}
		if len(got) != 66 {
			b.Fatalf("%d users online, want 66", len(got))
		}
	}
}
