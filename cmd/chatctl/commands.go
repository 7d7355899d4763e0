package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/switchboard-chat/switchboard/pkg/chat"
	"github.com/switchboard-chat/switchboard/pkg/postgres"
)

// JSON shapes of section 6 of PROTOCOL.md. Times are UTC; encoding/json writes them
// in RFC 3339.

type userOut struct {
	ID       string `json:"id"`
	Username string `json:"username"`
}

type presenceOut struct {
	User        userOut   `json:"user"`
	Connections []connOut `json:"connections"`
}

type connOut struct {
	HostID string    `json:"host_id"`
	ConnID string    `json:"conn_id"`
	Since  time.Time `json:"since"`
}

type hostsOut struct {
	Hosts []hostOut `json:"hosts"`
}

type hostOut struct {
	HostID        string    `json:"host_id"`
	InternalURL   string    `json:"internal_url"`
	LastHeartbeat time.Time `json:"last_heartbeat"`
}

type sessionOut struct {
	Session sessionBody `json:"session"`
}

type sessionBody struct {
	UserID    string    `json:"user_id"`
	Username  string    `json:"username"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
}

type pendingOut struct {
	User    userOut     `json:"user"`
	Threads []threadOut `json:"threads"`
}

type threadOut struct {
	ThreadID string `json:"thread_id"`
	Name     string `json:"name"`
	AckedSeq int64  `json:"acked_seq"`
	LastSeq  int64  `json:"last_seq"`
	Pending  int64  `json:"pending"`
}

// writeJSON prints v as one line.
func (a *app) writeJSON(v any) error {
	enc := json.NewEncoder(a.stdout)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// table returns a tabwriter on stdout; the caller flushes it.
func (a *app) table() *tabwriter.Writer {
	return tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
}

// stamp formats a time for tables: RFC 3339 UTC, to the second.
func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// alive reports whether a host's heartbeat is fresher than CHAT_HOST_TTL.
func (a *app) alive(h chat.Host, now time.Time) bool {
	return now.Sub(h.LastHeartbeat) < a.cfg.HostTTL
}

// findUser resolves a username (any case) to the user. Returns a notFoundError when
// there is none, including for a name no user could have.
func findUser(ctx context.Context, db *postgres.DB, raw string) (chat.User, error) {
	name, err := chat.NormalizeUsername(strings.TrimSpace(raw))
	if err != nil {
		return chat.User{}, &notFoundError{msg: fmt.Sprintf("no such user %q", raw)}
	}
	users, err := db.UsersByUsername(ctx, []string{name})
	if err != nil {
		return chat.User{}, err
	}
	if len(users) == 0 {
		return chat.User{}, &notFoundError{msg: fmt.Sprintf("no such user %q", name)}
	}
	return users[0], nil
}

// presence prints the user's live connections: entries whose host's heartbeat is
// fresh and whose instance is the host's current one. Entries of dead or restarted
// hosts are skipped (and counted in the table), never removed: chatctl only reads.
func (a *app) presence(ctx context.Context, username string) error {
	db, err := a.database(ctx)
	if err != nil {
		return err
	}
	rs, err := a.redisStore(ctx)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	u, err := findUser(ctx, db, username)
	if err != nil {
		return err
	}
	entries, err := rs.Lookup(ctx, []string{u.ID})
	if err != nil {
		return err
	}
	hosts, err := rs.Hosts(ctx)
	if err != nil {
		return err
	}
	now := time.Now()
	byID := make(map[string]chat.Host, len(hosts))
	for _, h := range hosts {
		byID[h.HostID] = h
	}
	out := presenceOut{User: userOut{ID: u.ID, Username: u.Username}, Connections: []connOut{}}
	stale := 0
	for _, c := range entries[u.ID] { // ordered by since, then conn id
		h, ok := byID[c.HostID]
		if !ok || !a.alive(h, now) || (c.Instance != "" && c.Instance != h.Instance) {
			stale++
			continue
		}
		out.Connections = append(out.Connections, connOut{HostID: c.HostID, ConnID: c.ConnID, Since: c.Since.UTC()})
	}
	if a.json {
		return a.writeJSON(out)
	}
	fmt.Fprintf(a.stdout, "user %s (%s): %d live connection%s\n", u.Username, u.ID, len(out.Connections), plural(len(out.Connections)))
	if len(out.Connections) > 0 {
		tw := a.table()
		fmt.Fprintln(tw, "HOST\tCONN ID\tSINCE")
		for _, c := range out.Connections {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", c.HostID, c.ConnID, stamp(c.Since))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	switch {
	case stale == 1:
		fmt.Fprintln(a.stdout, "(1 stale entry of a dead or restarted host not shown)")
	case stale > 1:
		fmt.Fprintf(a.stdout, "(%d stale entries of dead or restarted hosts not shown)\n", stale)
	}
	return nil
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// hosts prints the host registry: with --json the live hosts; the table lists every
// registered host and marks the stale ones.
func (a *app) hosts(ctx context.Context, _ string) error {
	rs, err := a.redisStore(ctx)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	hosts, err := rs.Hosts(ctx) // ordered by host id
	if err != nil {
		return err
	}
	now := time.Now()
	if a.json {
		out := hostsOut{Hosts: []hostOut{}}
		for _, h := range hosts {
			if a.alive(h, now) {
				out.Hosts = append(out.Hosts, hostOut{HostID: h.HostID, InternalURL: h.InternalURL, LastHeartbeat: h.LastHeartbeat.UTC()})
			}
		}
		return a.writeJSON(out)
	}
	if len(hosts) == 0 {
		fmt.Fprintln(a.stdout, "no host registered")
		return nil
	}
	tw := a.table()
	fmt.Fprintln(tw, "HOST\tSTATE\tINTERNAL URL\tLAST HEARTBEAT\tAGE\tSTARTED")
	for _, h := range hosts {
		state := "live"
		if !a.alive(h, now) {
			state = "STALE"
		}
		age := now.Sub(h.LastHeartbeat).Round(100 * time.Millisecond)
		if age > time.Minute {
			age = age.Round(time.Second)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", h.HostID, state, h.InternalURL, stamp(h.LastHeartbeat), age, stamp(h.StartedAt))
	}
	return tw.Flush()
}

// session prints the session behind a token. The token is hashed at once and never
// printed; a missing or expired session is a notFoundError.
func (a *app) session(ctx context.Context, token string) error {
	hash := chat.HashToken(token)
	rs, err := a.redisStore(ctx)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	s, err := rs.Session(ctx, hash)
	if chat.ErrorCode(err) == chat.EUnauthenticated {
		return &notFoundError{msg: "no such session (never created, logged out or expired)"}
	} else if err != nil {
		return err
	}
	out := sessionBody{UserID: s.UserID, Username: s.Username, CreatedAt: s.CreatedAt.UTC(), ExpiresAt: s.ExpiresAt.UTC()}
	if a.json {
		return a.writeJSON(sessionOut{Session: out})
	}
	tw := a.table()
	fmt.Fprintf(tw, "user\t%s (%s)\n", out.Username, out.UserID)
	fmt.Fprintf(tw, "created\t%s\n", stamp(out.CreatedAt))
	fmt.Fprintf(tw, "expires\t%s (in %s)\n", stamp(out.ExpiresAt), time.Until(out.ExpiresAt).Round(time.Second))
	return tw.Flush()
}

// pending prints, per thread of the user (newest activity first), how many messages
// the user has not acked.
func (a *app) pending(ctx context.Context, username string) error {
	db, err := a.database(ctx)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	u, err := findUser(ctx, db, username)
	if err != nil {
		return err
	}
	ms, err := db.Memberships(ctx, u.ID)
	if err != nil {
		return err
	}
	out := pendingOut{User: userOut{ID: u.ID, Username: u.Username}, Threads: make([]threadOut, 0, len(ms))}
	var total int64
	for _, m := range ms {
		p := max(m.LastSeq-m.AckedSeq, 0)
		total += p
		out.Threads = append(out.Threads, threadOut{ThreadID: m.ThreadID, Name: m.ThreadName, AckedSeq: m.AckedSeq, LastSeq: m.LastSeq, Pending: p})
	}
	if a.json {
		return a.writeJSON(out)
	}
	fmt.Fprintf(a.stdout, "user %s (%s): %d message%s not acked in %d thread%s\n",
		u.Username, u.ID, total, plural(int(total)), len(out.Threads), plural(len(out.Threads)))
	if len(out.Threads) == 0 {
		return nil
	}
	tw := a.table()
	fmt.Fprintln(tw, "THREAD\tNAME\tACKED\tLAST\tPENDING")
	for _, t := range out.Threads {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\n", t.ThreadID, printable(t.Name), t.AckedSeq, t.LastSeq, t.Pending)
	}
	return tw.Flush()
}

// printable keeps a user-chosen name from breaking the table or the terminal: control
// characters (tabs, newlines, escapes) become spaces.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return ' '
		}
		return r
	}, s)
}
