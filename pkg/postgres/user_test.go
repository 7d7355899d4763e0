package postgres_test

import (
	"context"
	"slices"
	"sync"
	"testing"

	"github.com/switchboard-chat/switchboard/pkg/chat"
	"github.com/switchboard-chat/switchboard/pkg/postgres"
)

func TestUsers(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db *postgres.DB) {
		ctx := context.Background()
		alice, err := db.CreateUser(ctx, "alice", "$2a$10$alicehash")
		if err != nil {
			t.Fatalf("create alice: %v", err)
		}
		if !chat.ValidID(alice.ID) || alice.Username != "alice" {
			t.Fatalf("created user = %+v", alice)
		}
		bob := mustUser(t, db, "bob")

		t.Run("username taken", func(t *testing.T) {
			_, err := db.CreateUser(ctx, "alice", "other")
			wantCode(t, err, chat.EUsernameTaken)
			// The first account is untouched.
			_, hash, err := db.UserCredentials(ctx, "alice")
			if err != nil || hash != "$2a$10$alicehash" {
				t.Fatalf("alice's hash after a taken registration = %q, %v", hash, err)
			}
		})

		t.Run("concurrent registrations of one name", func(t *testing.T) {
			var (
				wg             sync.WaitGroup
				mu             sync.Mutex
				created, taken int
				start          = make(chan struct{})
			)
			for range 8 {
				wg.Go(func() {
					<-start
					_, err := db.CreateUser(ctx, "carol", "h")
					mu.Lock()
					defer mu.Unlock()
					switch chat.ErrorCode(err) {
					case "":
						created++
					case chat.EUsernameTaken:
						taken++
					default:
						t.Errorf("create carol: %v", err)
					}
				})
			}
			close(start)
			wg.Wait()
			if created != 1 || taken != 7 {
				t.Fatalf("created %d, taken %d; want 1 and 7", created, taken)
			}
		})

		credentialCases := []struct {
			name     string
			username string
			want     chat.User
			wantHash string
			code     string
		}{
			{"known", "alice", alice, "$2a$10$alicehash", ""},
			{"unknown", "nobody", chat.User{}, "", chat.ENotFound},
		}
		for _, tc := range credentialCases {
			t.Run("credentials/"+tc.name, func(t *testing.T) {
				u, hash, err := db.UserCredentials(ctx, tc.username)
				wantCode(t, err, tc.code)
				if u != tc.want || hash != tc.wantHash {
					t.Fatalf("UserCredentials(%q) = %+v, %q; want %+v, %q", tc.username, u, hash, tc.want, tc.wantHash)
				}
			})
		}

		t.Run("by username", func(t *testing.T) {
			cases := []struct {
				names []string
				want  []string
			}{
				{[]string{"alice", "bob", "nobody"}, []string{"alice", "bob"}},
				{[]string{"nobody"}, nil},
				{nil, nil},
			}
			for _, tc := range cases {
				got, err := db.UsersByUsername(ctx, tc.names)
				if err != nil {
					t.Fatalf("UsersByUsername(%v): %v", tc.names, err)
				}
				if got == nil {
					t.Fatalf("UsersByUsername(%v) = nil, want an empty list", tc.names)
				}
				names := usernames(got)
				slices.Sort(names)
				if !slices.Equal(names, tc.want) {
					t.Fatalf("UsersByUsername(%v) = %v, want %v", tc.names, names, tc.want)
				}
				for _, u := range got {
					if (u.Username == "alice" && u != alice) || (u.Username == "bob" && u != bob) {
						t.Fatalf("UsersByUsername returned %+v", u)
					}
				}
			}
		})

		byIDCases := []struct {
			name string
			id   string
			want chat.User
			code string
		}{
			{"known", bob.ID, bob, ""},
			{"unknown", chat.NewID(), chat.User{}, chat.ENotFound},
			{"malformed", "not-an-id", chat.User{}, chat.ENotFound},
			{"upper case", "A" + bob.ID[1:], chat.User{}, chat.ENotFound},
		}
		for _, tc := range byIDCases {
			t.Run("by id/"+tc.name, func(t *testing.T) {
				u, err := db.UserByID(ctx, tc.id)
				wantCode(t, err, tc.code)
				if u != tc.want {
					t.Fatalf("UserByID = %+v, want %+v", u, tc.want)
				}
			})
		}
	})
}
