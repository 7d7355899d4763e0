package redis

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/switchboard-chat/switchboard/pkg/chat"
)

// AddHandoff records that hostID missed messages of threadID up to seq, keeping the
// highest seq per thread (handoff_add.lua) and renewing the record's HandoffTTL. The
// host takes its records with TakeHandoffs at least once a second; a host that does not
// within the TTL is dead, and its members catch up when they reconnect.
func (s *Store) AddHandoff(ctx context.Context, hostID, threadID string, seq int64) error {
	if hostID == "" || threadID == "" || seq <= 0 {
		return fmt.Errorf("redis: hand-off needs a host, a thread and a positive seq (got %q, %q, %d)", hostID, threadID, seq)
	}
	err := s.scripts.handoffAdd.Run(ctx, s.rdb, []string{s.handoffKey(hostID)},
		threadID, seq, int64(HandoffTTL/time.Second)).Err()
	if err != nil {
		return fmt.Errorf("record hand-off for host %s: %w", hostID, err)
	}
	return nil
}

// TakeHandoffs returns and deletes, atomically (handoff_take.lua), the records left
// for hostID: thread id -> highest missed seq. A record added meanwhile is either in
// this answer or kept for the next. No records is an empty map.
func (s *Store) TakeHandoffs(ctx context.Context, hostID string) (map[string]int64, error) {
	flat, err := s.scripts.handoffTake.Run(ctx, s.rdb, []string{s.handoffKey(hostID)}).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("take hand-offs of host %s: %w", hostID, err)
	}
	out := make(map[string]int64, len(flat)/2)
	for i := 0; i+1 < len(flat); i += 2 {
		seq, err := strconv.ParseInt(flat[i+1], 10, 64)
		if err != nil {
			s.log.Warn("skip undecodable hand-off", "host", hostID, "thread", flat[i], "err", err)
			continue
		}
		out[flat[i]] = seq
	}
	return out, nil
}

// AddDisconnect records that hostID must still close the sockets d names (a logout
// whose disconnect call could not reach it), renewing the record's HandoffTTL. The host
// takes its records with TakeDisconnects on the same one-second tick as its hand-offs;
// a host that does not within the TTL is dead, and its sockets are gone with it.
func (s *Store) AddDisconnect(ctx context.Context, hostID string, d chat.Disconnect) error {
	if hostID == "" || (d.SessionHash == "") == (d.UserID == "") {
		return fmt.Errorf("redis: a disconnect record needs a host and one of a session or a user (got %q, %+v)", hostID, d)
	}
	member, err := json.Marshal(d)
	if err != nil {
		return err
	}
	key := s.disconnectKey(hostID)
	_, err = s.rdb.TxPipelined(ctx, func(p goredis.Pipeliner) error {
		p.SAdd(ctx, key, member)
		p.Expire(ctx, key, HandoffTTL)
		return nil
	})
	if err != nil {
		return fmt.Errorf("record disconnect for host %s: %w", hostID, err)
	}
	return nil
}

// TakeDisconnects returns and deletes, in one transaction, the disconnect records left
// for hostID. A record added meanwhile is either in this answer or kept for the next.
func (s *Store) TakeDisconnects(ctx context.Context, hostID string) ([]chat.Disconnect, error) {
	key := s.disconnectKey(hostID)
	var members *goredis.StringSliceCmd
	_, err := s.rdb.TxPipelined(ctx, func(p goredis.Pipeliner) error {
		members = p.SMembers(ctx, key)
		p.Del(ctx, key)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("take disconnects of host %s: %w", hostID, err)
	}
	var out []chat.Disconnect
	for _, m := range members.Val() {
		var d chat.Disconnect
		if err := json.Unmarshal([]byte(m), &d); err != nil || (d.SessionHash == "") == (d.UserID == "") {
			s.log.Warn("skip undecodable disconnect record", "host", hostID, "record", m)
			continue
		}
		out = append(out, d)
	}
	return out, nil
}
