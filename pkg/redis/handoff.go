package redis

import (
	"context"
	"fmt"
	"strconv"
	"time"
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
