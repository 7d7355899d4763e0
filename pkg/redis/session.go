package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/switchboard-chat/switchboard/pkg/chat"
)

// errNotHash is returned when a caller passes something that is not a hex SHA-256 as
// a session key: most likely the token itself, which must never reach Redis.
var errNotHash = errors.New("redis: session key must be the hex SHA-256 of the token")

// isTokenHash reports whether h looks like chat.HashToken's output: 64 lower-case hex
// digits.
func isTokenHash(h string) bool {
	if len(h) != 64 {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// CreateSession stores sess under hash (the hex SHA-256 of the token, see
// chat.HashToken) for ttl. It refuses anything that is not such a hash, so a token
// passed by mistake is never stored. sess.Hash is not stored.
func (s *Store) CreateSession(ctx context.Context, hash string, sess chat.Session, ttl time.Duration) error {
	if !isTokenHash(hash) {
		return errNotHash
	}
	if ttl <= 0 {
		return fmt.Errorf("redis: create session: ttl %v must be positive", ttl)
	}
	sess.CreatedAt, sess.ExpiresAt = sess.CreatedAt.UTC(), sess.ExpiresAt.UTC()
	val, err := json.Marshal(sess) // chat.Session's Hash is `json:"-"`
	if err != nil {
		return fmt.Errorf("encode session: %w", err)
	}
	if err := s.rdb.Set(ctx, s.sessionKey(hash), val, ttl).Err(); err != nil {
		return fmt.Errorf("store session of user %s: %w", sess.UserID, err)
	}
	return nil
}

// Session returns the session stored under hash, with Hash set. It returns
// EUnauthenticated when there is none (never created, deleted, or expired, including
// a stored expires_at already past by Config.Now) or hash is not a token hash, and a
// plain error when Redis fails.
func (s *Store) Session(ctx context.Context, hash string) (chat.Session, error) {
	if !isTokenHash(hash) {
		return chat.Session{}, chat.Errorf(chat.EUnauthenticated, "no such session")
	}
	val, err := s.rdb.Get(ctx, s.sessionKey(hash)).Bytes()
	if errors.Is(err, goredis.Nil) {
		return chat.Session{}, chat.Errorf(chat.EUnauthenticated, "no such session")
	} else if err != nil {
		return chat.Session{}, fmt.Errorf("read session: %w", err)
	}
	var sess chat.Session
	if err := json.Unmarshal(val, &sess); err != nil {
		s.log.Error("undecodable session value; treating as logged out", "err", err)
		return chat.Session{}, chat.Errorf(chat.EUnauthenticated, "no such session")
	}
	if !sess.ExpiresAt.IsZero() && !s.cfg.Now().Before(sess.ExpiresAt) {
		return chat.Session{}, chat.Errorf(chat.EUnauthenticated, "session expired")
	}
	sess.Hash = hash
	return sess, nil
}

// DeleteSession removes the session stored under hash; a missing one is not an error.
func (s *Store) DeleteSession(ctx context.Context, hash string) error {
	if !isTokenHash(hash) {
		return errNotHash
	}
	if err := s.rdb.Del(ctx, s.sessionKey(hash)).Err(); err != nil {
		return fmt.Errorf("delete session: %w", err)
	}
	return nil
}
