package redis

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/switchboard-chat/switchboard/pkg/chat"
)

// entry is a presence hash value; the user id is in the key.
type entry struct {
	HostID   string    `json:"host_id"`
	ConnID   string    `json:"conn_id"`
	Since    time.Time `json:"since"`
	Instance string    `json:"instance,omitempty"`
}

// byUser groups conns by user id, keeping the users in first-seen order.
func byUser(conns []chat.Connection) ([]string, map[string][]chat.Connection) {
	var users []string
	m := make(map[string][]chat.Connection)
	for _, c := range conns {
		if _, ok := m[c.UserID]; !ok {
			users = append(users, c.UserID)
		}
		m[c.UserID] = append(m[c.UserID], c)
	}
	return users, m
}

// connIDs returns the conn ids of conns.
func connIDs(conns []chat.Connection) []any {
	out := make([]any, len(conns))
	for i, c := range conns {
		out[i] = c.ConnID
	}
	return out
}

func validConns(conns []chat.Connection) error {
	for _, c := range conns {
		if c.UserID == "" || c.ConnID == "" || c.HostID == "" {
			return fmt.Errorf("redis: presence entry needs user, host and conn id (got %q, %q, %q)", c.UserID, c.HostID, c.ConnID)
		}
	}
	return nil
}

// AddConnections registers conns (a zero Since becomes now) and publishes a connect
// event for each, in one pipeline per thousand commands: one round trip for a socket
// open, a few for a host re-registering everything after Redis lost its data. Adding
// an existing conn id overwrites it. Each conn's socket-slot claim (ReserveSocket) is
// dropped in the same pipeline.
func (s *Store) AddConnections(ctx context.Context, conns []chat.Connection) error {
	if len(conns) == 0 {
		return nil
	}
	if err := validConns(conns); err != nil {
		return err
	}
	now := s.cfg.Now().UTC()
	users, groups := byUser(conns)
	pipe := s.rdb.Pipeline()
	for _, u := range users {
		cs := groups[u]
		fields := make([]any, 0, 2*len(cs))
		for _, c := range cs {
			since := c.Since
			if since.IsZero() {
				since = now
			}
			val, err := json.Marshal(entry{HostID: c.HostID, ConnID: c.ConnID, Since: since.UTC(), Instance: c.Instance})
			if err != nil {
				return fmt.Errorf("encode presence entry: %w", err)
			}
			fields = append(fields, c.ConnID, val)
			if err := s.queueEvent(ctx, pipe, Event{Type: EventConnect, HostID: c.HostID, UserID: u, ConnID: c.ConnID, At: now}); err != nil {
				return err
			}
		}
		pipe.HSet(ctx, s.presenceKey(u), fields...)
		// The sockets hold their slots by their entries now: drop their claims
		// (ReserveSocket). After the HSET, so that no count misses a socket between.
		pipe.ZRem(ctx, s.upgradingKey(u), connIDs(cs)...)
		if pipe.Len() >= maxPipeline {
			if err := s.execPipeline(ctx, pipe, nil); err != nil {
				return fmt.Errorf("add presence entries: %w", err)
			}
		}
	}
	if pipe.Len() > 0 {
		if err := s.execPipeline(ctx, pipe, nil); err != nil {
			return fmt.Errorf("add presence entries: %w", err)
		}
	}
	return nil
}

// RemoveConnections deletes conns and publishes a disconnect event for each. For a
// user left with no entry it records last seen (now) for LastSeenTTL, atomically with
// the delete (presence_remove.lua), so a user who reconnected meanwhile is never
// marked gone. Removing a missing entry is not an error. One pipeline per thousand
// commands.
func (s *Store) RemoveConnections(ctx context.Context, conns []chat.Connection) error {
	if len(conns) == 0 {
		return nil
	}
	if err := validConns(conns); err != nil {
		return err
	}
	now := s.cfg.Now().UTC()
	// A JSON string, as every value in Redis is JSON (contract section 6): the time
	// within quotes, which RFC 3339 never needs escaped.
	nowText := `"` + now.Format(time.RFC3339Nano) + `"`
	ttl := strconv.Itoa(int(LastSeenTTL / time.Second))
	users, groups := byUser(conns)
	pipe := s.rdb.Pipeline()
	var evals []pipedEval
	flush := func() error {
		err := s.execPipeline(ctx, pipe, evals)
		evals = evals[:0]
		if err != nil {
			return fmt.Errorf("remove presence entries: %w", err)
		}
		return nil
	}
	for _, u := range users {
		cs := groups[u]
		args := make([]any, 0, 2+len(cs))
		args = append(args, nowText, ttl)
		for _, c := range cs {
			args = append(args, c.ConnID)
			if err := s.queueEvent(ctx, pipe, Event{Type: EventDisconnect, HostID: c.HostID, UserID: u, ConnID: c.ConnID, At: now}); err != nil {
				return err
			}
		}
		// A socket whose registration failed may still hold its claim.
		pipe.ZRem(ctx, s.upgradingKey(u), connIDs(cs)...)
		e := pipedEval{script: s.scripts.presenceRemove, keys: []string{s.presenceKey(u), s.lastSeenKey(u)}, args: args}
		e.cmd = e.script.EvalSha(ctx, pipe, e.keys, e.args...)
		evals = append(evals, e)
		if pipe.Len() >= maxPipeline {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if pipe.Len() > 0 {
		return flush()
	}
	return nil
}

// Lookup returns the entries of every user in userIDs, in one round trip (a pipeline
// of HGETALL; on Redis Cluster go-redis sends one per node, in parallel). Users with
// no entry are absent from the map; each user's entries are ordered by Since, then
// ConnID. Undecodable entries are skipped. Entries are raw: the caller decides which
// hosts are alive.
func (s *Store) Lookup(ctx context.Context, userIDs []string) (map[string][]chat.Connection, error) {
	out := make(map[string][]chat.Connection, len(userIDs))
	if len(userIDs) == 0 {
		return out, nil
	}
	// HVALS, not HGETALL: each value carries its conn_id, and a slice per user costs a
	// fraction of a map per user on a lookup every message makes. The commands go out
	// in one pipeline with those of the other sends in flight on this host (batch.go).
	cmds := make([]*goredis.StringSliceCmd, len(userIDs))
	err := s.batch.do(ctx, len(userIDs), func(p goredis.Pipeliner) {
		for i, u := range userIDs {
			cmds[i] = p.HVals(ctx, s.presenceKey(u))
		}
	})
	if err == nil {
		for _, c := range cmds {
			if err = c.Err(); err != nil {
				break
			}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("look up presence of %d users: %w", len(userIDs), err)
	}
	// One backing array for every user's entries: a 100-member lookup made a hundred
	// small slices.
	total := 0
	for _, c := range cmds {
		total += len(c.Val())
	}
	backing := make([]chat.Connection, 0, total)
	for i, u := range userIDs {
		vals := cmds[i].Val()
		if len(vals) == 0 {
			continue
		}
		if _, dup := out[u]; dup {
			continue
		}
		start := len(backing)
		for _, val := range vals {
			e, err := decodeEntry(val)
			if err != nil || e.ConnID == "" {
				s.log.Debug("skip undecodable presence entry", "user", u, "err", err)
				continue
			}
			backing = append(backing, chat.Connection{UserID: u, HostID: e.HostID, ConnID: e.ConnID, Since: e.Since, Instance: e.Instance})
		}
		conns := backing[start:len(backing):len(backing)] // full slice: an append by the caller copies
		if len(conns) == 0 {
			continue
		}
		slices.SortFunc(conns, func(a, b chat.Connection) int {
			return cmp.Or(a.Since.Compare(b.Since), cmp.Compare(a.ConnID, b.ConnID))
		})
		out[u] = conns
	}
	return out, nil
}

// LastSeen returns when each user's last connection closed, for the users where that
// is known (recorded in the last LastSeenTTL). One pipeline of GETs, since MGET cannot
// span Cluster slots.
func (s *Store) LastSeen(ctx context.Context, userIDs []string) (map[string]time.Time, error) {
	out := make(map[string]time.Time)
	if len(userIDs) == 0 {
		return out, nil
	}
	pipe := s.rdb.Pipeline()
	cmds := make([]*goredis.StringCmd, len(userIDs))
	for i, u := range userIDs {
		cmds[i] = pipe.Get(ctx, s.lastSeenKey(u))
	}
	_, _ = pipe.Exec(ctx) // errors are read per command: goredis.Nil is no error here
	for i, u := range userIDs {
		val, err := cmds[i].Result()
		if errors.Is(err, goredis.Nil) {
			continue // never seen, or long ago
		} else if err != nil {
			return nil, fmt.Errorf("read last seen of %d users: %w", len(userIDs), err)
		}
		// Written as a JSON string; values written bare before 2026-11-28 live out their
		// 30 days, so both are read.
		t, err := time.Parse(time.RFC3339Nano, strings.Trim(val, `"`))
		if err != nil {
			s.log.Debug("skip undecodable last seen", "user", u, "err", err)
			continue
		}
		out[u] = t.UTC()
	}
	return out, nil
}
