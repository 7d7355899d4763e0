package redis

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// Event types published on the presence-events channel.
const (
	EventConnect    = "connect"
	EventDisconnect = "disconnect"
	EventHostUp     = "host_up"
	EventHostDown   = "host_down"
)

// Event is one presence change, published as JSON on the presence-events channel for
// observers such as `chatctl watch`. Events are best effort (Redis pub/sub keeps
// nothing for absent subscribers); the presence hashes are the record.
type Event struct {
	Type   string    `json:"type"`
	HostID string    `json:"host_id,omitempty"`
	UserID string    `json:"user_id,omitempty"`
	ConnID string    `json:"conn_id,omitempty"`
	At     time.Time `json:"at"`
}

// queueEvent adds a PUBLISH of ev to pipe.
func (s *Store) queueEvent(ctx context.Context, pipe goredis.Pipeliner, ev Event) error {
	payload, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("encode event: %w", err)
	}
	pipe.Publish(ctx, s.eventsChannel(), payload)
	return nil
}

// PublishEvent publishes ev (a zero At becomes Config.Now).
func (s *Store) PublishEvent(ctx context.Context, ev Event) error {
	if ev.At.IsZero() {
		ev.At = s.cfg.Now()
	}
	ev.At = ev.At.UTC()
	payload, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("encode event: %w", err)
	}
	if err := s.rdb.Publish(ctx, s.eventsChannel(), payload).Err(); err != nil {
		return fmt.Errorf("publish %s event: %w", ev.Type, err)
	}
	return nil
}

// SubscribeEvents subscribes to presence events. It returns once Redis confirmed the
// subscription (or, if Redis is down, after logging that; go-redis keeps retrying), so
// events published after it returns are received. The channel is closed when ctx ends
// or stop is called; stop may be called more than once and waits for the reader to
// end. The channel holds 64 events; a consumer that falls further behind makes
// go-redis drop messages (after its own 100-message buffer and send timeout) rather
// than buffer without bound. Undecodable messages are skipped.
func (s *Store) SubscribeEvents(ctx context.Context) (<-chan Event, func()) {
	ctx, cancel := context.WithCancel(ctx)
	ps := s.rdb.Subscribe(ctx, s.eventsChannel())
	if _, err := ps.Receive(ctx); err != nil {
		s.log.Warn("subscribe to presence events; retrying in the background", "err", err)
	}
	out := make(chan Event, 64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(out)
		defer func() { _ = ps.Close() }()
		msgs := ps.Channel()
		for {
			select {
			case <-ctx.Done():
				return
			case m, ok := <-msgs:
				if !ok {
					return
				}
				var ev Event
				if err := json.Unmarshal([]byte(m.Payload), &ev); err != nil {
					s.log.Debug("skip undecodable presence event", "err", err)
					continue
				}
				select {
				case out <- ev:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			<-done
		})
	}
	return out, stop
}
