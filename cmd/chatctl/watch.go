package main

import (
	"context"
	"fmt"
	"time"

	"github.com/switchboard-chat/switchboard/pkg/chat"
	"github.com/switchboard-chat/switchboard/pkg/postgres"
	"github.com/switchboard-chat/switchboard/pkg/redis"
)

// pollEvery is how often watch reads the hosts registry to notice hosts that came up
// or went stale without an event (a killed host publishes nothing).
const pollEvery = time.Second

// forgetAfter is how long watch remembers a host that left the registry, so that a
// late host_down event for it is not printed twice.
const forgetAfter = time.Minute

// maxNames bounds the user id -> username cache of watch.
const maxNames = 10_000

// watchLine is one line of `watch --json`: a presence event as published on the
// presence-events channel, with the username when the database is configured.
type watchLine struct {
	Type     string    `json:"type"`
	HostID   string    `json:"host_id,omitempty"`
	UserID   string    `json:"user_id,omitempty"`
	Username string    `json:"username,omitempty"`
	ConnID   string    `json:"conn_id,omitempty"`
	At       time.Time `json:"at"`
}

// hostState is what watch last reported about a host.
type hostState struct {
	alive    bool
	instance string    // "" when not known yet (alive by event, not yet polled)
	goneAt   time.Time // when it left the registry while not alive; zero while registered
}

// watcher turns the presence event stream and the polled hosts registry into one
// stream of lines with each host transition printed once, whichever source saw it
// first. Only watch's goroutine uses it.
type watcher struct {
	a     *app
	rs    *redis.Store
	db    *postgres.DB // nil: print user ids only
	hosts map[string]*hostState
	names map[string]string
	// pollFailed is set while the registry cannot be read, so the outage is reported
	// once, not every second.
	pollFailed bool
}

// watch prints presence changes until ctx ends (Ctrl-C), then returns nil. Events
// come from the presence-events channel; host_up and host_down are also derived from
// the registry every pollEvery, since a killed host publishes nothing and its
// registration merely goes stale.
func (a *app) watch(ctx context.Context, _ string) error {
	rs, err := a.redisStore(ctx)
	if err != nil {
		return err
	}
	w := &watcher{a: a, rs: rs, hosts: map[string]*hostState{}, names: map[string]string{}}
	if a.cfg.DatabaseURL != "" {
		if db, err := a.database(ctx); err != nil {
			fmt.Fprintf(a.stderr, "chatctl watch: showing user ids only: %s\n", oneLine(err.Error()))
		} else {
			w.db = db
		}
	}
	// The registry is read before subscribing: a host that changes in between is
	// caught by the next poll, and subscribed observers see the snapshot taken.
	if err := w.snapshot(ctx); err != nil {
		return err
	}
	events, stop := rs.SubscribeEvents(ctx)
	defer stop()
	if !a.json {
		fmt.Fprintln(a.stderr, "chatctl watch: watching presence events; Ctrl-C to stop")
	}
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-events:
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("presence event stream ended")
			}
			if err := w.event(ctx, ev); err != nil {
				return err
			}
		case <-tick.C:
			if err := w.poll(ctx); err != nil {
				return err
			}
		}
	}
}

// snapshot records which hosts are alive now, printing nothing.
func (w *watcher) snapshot(ctx context.Context) error {
	qctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	hosts, err := w.rs.Hosts(qctx)
	if err != nil {
		return err
	}
	now := time.Now()
	for _, h := range hosts {
		w.hosts[h.HostID] = &hostState{alive: w.a.alive(h, now), instance: h.Instance}
	}
	return nil
}

// event prints one published event; host transitions already printed are skipped.
func (w *watcher) event(ctx context.Context, ev redis.Event) error {
	switch ev.Type {
	case redis.EventHostUp:
		st := w.hosts[ev.HostID]
		if st != nil && st.alive {
			return nil
		}
		w.hosts[ev.HostID] = &hostState{alive: true}
	case redis.EventHostDown:
		st := w.hosts[ev.HostID]
		if st != nil && !st.alive {
			return nil
		}
		if st == nil {
			w.hosts[ev.HostID] = &hostState{goneAt: time.Now()}
		} else {
			st.alive = false
		}
	}
	return w.print(ctx, ev)
}

// poll reads the registry and prints the host transitions no event reported: a host
// gone stale or removed (host_down), a host fresh again (host_up), and a restart with
// the same id between two polls (both).
func (w *watcher) poll(ctx context.Context) error {
	qctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	hosts, err := w.rs.Hosts(qctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		if !w.pollFailed {
			fmt.Fprintf(w.a.stderr, "chatctl watch: cannot read the hosts registry, retrying: %s\n", oneLine(err.Error()))
			w.pollFailed = true
		}
		return nil
	}
	if w.pollFailed {
		fmt.Fprintln(w.a.stderr, "chatctl watch: hosts registry readable again")
		w.pollFailed = false
	}
	now := time.Now()
	seen := make(map[string]bool, len(hosts))
	for _, h := range hosts {
		seen[h.HostID] = true
		live := w.a.alive(h, now)
		st := w.hosts[h.HostID]
		if st == nil {
			st = &hostState{}
			w.hosts[h.HostID] = st
		}
		st.goneAt = time.Time{}
		switch {
		case live && !st.alive:
			st.alive, st.instance = true, h.Instance
			if err := w.print(ctx, redis.Event{Type: redis.EventHostUp, HostID: h.HostID, At: h.LastHeartbeat}); err != nil {
				return err
			}
		case live && st.instance != "" && st.instance != h.Instance:
			// Restarted between two polls: the old instance went, a new one came.
			st.instance = h.Instance
			if err := w.print(ctx, redis.Event{Type: redis.EventHostDown, HostID: h.HostID, At: h.StartedAt}); err != nil {
				return err
			}
			if err := w.print(ctx, redis.Event{Type: redis.EventHostUp, HostID: h.HostID, At: h.StartedAt}); err != nil {
				return err
			}
		case !live && st.alive:
			st.alive, st.instance = false, h.Instance
			// It died when its last heartbeat expired.
			if err := w.print(ctx, redis.Event{Type: redis.EventHostDown, HostID: h.HostID, At: h.LastHeartbeat.Add(w.a.cfg.HostTTL)}); err != nil {
				return err
			}
		default:
			st.instance = h.Instance
		}
	}
	for id, st := range w.hosts {
		if seen[id] {
			continue
		}
		switch {
		case st.alive:
			st.alive, st.goneAt = false, now
			if err := w.print(ctx, redis.Event{Type: redis.EventHostDown, HostID: id, At: now}); err != nil {
				return err
			}
		case st.goneAt.IsZero():
			st.goneAt = now
		case now.Sub(st.goneAt) > forgetAfter:
			delete(w.hosts, id)
		}
	}
	return nil
}

// print writes one event as a JSON line or a text line.
func (w *watcher) print(ctx context.Context, ev redis.Event) error {
	line := watchLine{Type: ev.Type, HostID: ev.HostID, UserID: ev.UserID, ConnID: ev.ConnID, At: ev.At.UTC()}
	if line.At.IsZero() {
		line.At = time.Now().UTC()
	}
	if ev.UserID != "" {
		line.Username = w.username(ctx, ev.UserID)
	}
	if w.a.json {
		return w.a.writeJSON(line)
	}
	var err error
	switch {
	case line.UserID != "":
		who := line.UserID
		if line.Username != "" {
			who = line.Username + " (" + line.UserID + ")"
		}
		_, err = fmt.Fprintf(w.a.stdout, "%s  %-10s  user %s  conn %s  host %s\n", stamp(line.At), line.Type, who, line.ConnID, line.HostID)
	default:
		_, err = fmt.Fprintf(w.a.stdout, "%s  %-10s  host %s\n", stamp(line.At), line.Type, line.HostID)
	}
	return err
}

// username names a user id from the database, caching answers; "" when the database
// is not configured or does not answer.
func (w *watcher) username(ctx context.Context, userID string) string {
	if w.db == nil {
		return ""
	}
	if name, ok := w.names[userID]; ok {
		return name
	}
	qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	u, err := w.db.UserByID(qctx, userID)
	if err != nil && chat.ErrorCode(err) != chat.ENotFound {
		return "" // not cached: the database may answer next time
	}
	if len(w.names) >= maxNames {
		clear(w.names)
	}
	w.names[userID] = u.Username
	return u.Username
}
