package redis

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/switchboard-chat/switchboard/pkg/chat"
)

// hostValue is a hosts hash value: the chat.Host JSON plus the heartbeat in unix ms,
// which the Lua scripts compare without parsing times.
type hostValue struct {
	chat.Host
	HBMs int64 `json:"hb_ms"`
}

// Heartbeat claims or refreshes h's registration, stamping it with Config.Now (a zero
// StartedAt becomes now too). In one script (heartbeat.lua) it returns EHostIDTaken
// and writes nothing when another instance holds h.HostID with a heartbeat younger
// than ttl. fresh is true when the registration was absent (first start, or Redis lost
// its data), held by a stale other instance (a restart with the same id), or our own
// but stale (others may have removed our entries meanwhile): the host then
// re-registers its live connections. A fresh claim publishes host_up, best effort.
func (s *Store) Heartbeat(ctx context.Context, h chat.Host, ttl time.Duration) (fresh bool, err error) {
	if h.HostID == "" || h.Instance == "" {
		return false, fmt.Errorf("redis: heartbeat needs a host id and an instance (got %q, %q)", h.HostID, h.Instance)
	}
	if ttl <= 0 {
		return false, fmt.Errorf("redis: heartbeat ttl %v must be positive", ttl)
	}
	now := s.cfg.Now().UTC()
	h.LastHeartbeat = now
	if h.StartedAt.IsZero() {
		h.StartedAt = now
	}
	h.StartedAt = h.StartedAt.UTC()
	val, err := json.Marshal(hostValue{Host: h, HBMs: now.UnixMilli()})
	if err != nil {
		return false, fmt.Errorf("encode host: %w", err)
	}
	res, err := s.scripts.heartbeat.Run(ctx, s.rdb, []string{s.hostsKey()},
		h.HostID, h.Instance, now.UnixMilli(), ttl.Milliseconds(), val).Int64()
	if err != nil {
		return false, fmt.Errorf("heartbeat of host %s: %w", h.HostID, err)
	}
	switch res {
	case -1:
		return false, chat.Errorf(chat.EHostIDTaken, "host id %q is held by another live host", h.HostID)
	case 1:
		s.log.Info("host registered", "host", h.HostID, "instance", h.Instance)
		if err := s.PublishEvent(ctx, Event{Type: EventHostUp, HostID: h.HostID, At: now}); err != nil {
			s.log.Warn("publish host_up", "host", h.HostID, "err", err)
		}
		return true, nil
	default:
		return false, nil
	}
}

// RemoveHost deletes the host's registration (on drain) and publishes host_down.
// Removing a missing host is not an error.
func (s *Store) RemoveHost(ctx context.Context, hostID string) error {
	pipe := s.rdb.Pipeline()
	pipe.HDel(ctx, s.hostsKey(), hostID)
	if err := s.queueEvent(ctx, pipe, Event{Type: EventHostDown, HostID: hostID, At: s.cfg.Now().UTC()}); err != nil {
		return err
	}
	if err := s.execPipeline(ctx, pipe, nil); err != nil {
		return fmt.Errorf("remove host %s: %w", hostID, err)
	}
	return nil
}

// Hosts lists the registered hosts, live or not (the caller judges LastHeartbeat),
// ordered by HostID. Undecodable registrations are skipped.
func (s *Store) Hosts(ctx context.Context) ([]chat.Host, error) {
	all, err := s.rdb.HGetAll(ctx, s.hostsKey()).Result()
	if err != nil {
		return nil, fmt.Errorf("list hosts: %w", err)
	}
	hosts := make([]chat.Host, 0, len(all))
	for id, val := range all {
		var hv hostValue
		if err := json.Unmarshal([]byte(val), &hv); err != nil {
			s.log.Warn("skip undecodable host registration", "host", id, "err", err)
			continue
		}
		hv.HostID = id
		hosts = append(hosts, hv.Host)
	}
	slices.SortFunc(hosts, func(a, b chat.Host) int { return strings.Compare(a.HostID, b.HostID) })
	return hosts, nil
}

// PruneHosts removes, atomically (prune_hosts.lua), registrations whose heartbeat is
// older than olderThan by Config.Now, and undecodable ones; it publishes host_down for
// each, best effort, and returns their ids. Hosts that were killed never remove their
// own registration, so something (any host, now and then) must.
func (s *Store) PruneHosts(ctx context.Context, olderThan time.Duration) ([]string, error) {
	if olderThan <= 0 {
		return nil, fmt.Errorf("redis: prune hosts: age %v must be positive", olderThan)
	}
	now := s.cfg.Now().UTC()
	removed, err := s.scripts.pruneHosts.Run(ctx, s.rdb, []string{s.hostsKey()},
		now.UnixMilli(), olderThan.Milliseconds()).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("prune hosts: %w", err)
	}
	if len(removed) == 0 {
		return nil, nil
	}
	s.log.Info("pruned dead hosts", "hosts", removed)
	pipe := s.rdb.Pipeline()
	for _, id := range removed {
		if err := s.queueEvent(ctx, pipe, Event{Type: EventHostDown, HostID: id, At: now}); err != nil {
			return removed, err
		}
	}
	if err := s.execPipeline(ctx, pipe, nil); err != nil {
		s.log.Warn("publish host_down", "err", err)
	}
	return removed, nil
}
