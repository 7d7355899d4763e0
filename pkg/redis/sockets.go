package redis

import (
	"context"
	"fmt"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/switchboard-chat/switchboard/pkg/chat"
)

// SocketClaimTTL is how long a socket slot claimed by ReserveSocket lasts when neither
// the socket's registration (AddConnections) nor ReleaseSocket drops it first: longer
// than an upgrade, its hello and its registration take.
const SocketClaimTTL = 15 * time.Second

// ReserveSocket claims one of userID's socket slots for connID, in one round trip
// (socket_reserve.lua): unless the user's presence entries written by the live host
// instances in live, plus the unexpired claims of sockets not registered yet, already
// reach limit, it adds a claim that lasts SocketClaimTTL. The count and the claim are
// one atomic step, so concurrent upgrades on any number of hosts never pass the limit.
// Without final, entries of hosts not in live that could decide the answer give
// chat.SocketClaimUnsure; with it they count as dead. The claim is dropped when AddConnections
// registers connID or ReleaseSocket is called, or when it expires. n is the count
// found (including the new claim).
func (s *Store) ReserveSocket(ctx context.Context, userID, connID string, limit int, live []chat.Host, final bool) (c chat.SocketClaim, n int, err error) {
	if userID == "" || connID == "" {
		return chat.SocketClaimFull, 0, fmt.Errorf("redis: socket claim needs user and conn id (got %q, %q)", userID, connID)
	}
	finalArg := "0"
	if final {
		finalArg = "1"
	}
	args := make([]any, 0, 5+2*len(live))
	args = append(args, s.cfg.Now().UnixMilli(), SocketClaimTTL.Milliseconds(), limit, connID, finalArg)
	for _, h := range live {
		args = append(args, h.HostID, h.Instance)
	}
	res, err := s.scripts.socketReserve.Run(ctx, s.rdb, []string{s.presenceKey(userID), s.upgradingKey(userID)}, args...).Int64Slice()
	if err == nil && len(res) != 2 {
		err = fmt.Errorf("socket_reserve.lua answered %d values", len(res))
	}
	if err != nil {
		return chat.SocketClaimFull, 0, fmt.Errorf("claim a socket slot: %w", err)
	}
	switch res[0] {
	case 1:
		c = chat.SocketClaimReserved
	case -1:
		c = chat.SocketClaimUnsure
	}
	return c, int(res[1]), nil
}

// ReleaseSocket drops the claim of connID (an upgrade that failed). Dropping a claim
// that is not there is not an error.
func (s *Store) ReleaseSocket(ctx context.Context, userID, connID string) error {
	if err := s.rdb.ZRem(ctx, s.upgradingKey(userID), connID).Err(); err != nil {
		return fmt.Errorf("release socket slot: %w", err)
	}
	return nil
}

// Claims returns the unexpired socket claims of userID: conn id -> expiry. For tests
// and debugging.
func (s *Store) Claims(ctx context.Context, userID string) (map[string]time.Time, error) {
	zs, err := s.rdb.ZRangeByScoreWithScores(ctx, s.upgradingKey(userID), &goredis.ZRangeBy{Min: "(" + strconv.FormatInt(s.cfg.Now().UnixMilli(), 10), Max: "+inf"}).Result()
	if err != nil {
		return nil, fmt.Errorf("read socket claims: %w", err)
	}
	out := make(map[string]time.Time, len(zs))
	for _, z := range zs {
		id, _ := z.Member.(string)
		out[id] = time.UnixMilli(int64(z.Score)).UTC()
	}
	return out, nil
}
