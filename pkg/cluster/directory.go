package cluster

import (
	"sync"
	"time"

	"github.com/switchboard-chat/switchboard/pkg/chat"
)

// Directory is this host's view of the hosts registered in Redis, refreshed every
// second by the Node. Asking whether a host is alive costs a map lookup, so the send
// path never pays a Redis round trip for it. When Redis is unreachable the view keeps
// the last known list: that is who gets the fallback deliveries.
type Directory struct {
	self string
	ttl  time.Duration
	now  func() time.Time

	mu    sync.RWMutex
	hosts map[string]chat.Host
	read  time.Time // when Update last stored a list read from Redis
	// failedAt is when reading Redis began to fail (zero while reads succeed). No host
	// can beat while Redis is unreachable, so once it answers again every heartbeat is
	// old: a host that was alive when the outage began still counts as alive until
	// graceUntil, one TTL after the first successful read, its time to beat again.
	// Without it, the first deliveries after an outage longer than the TTL would take
	// every other host for dead, skip its live sockets and delete their entries.
	failedAt   time.Time
	graceFrom  time.Time
	graceUntil time.Time
}

// NewDirectory returns a view in which self is always alive.
func NewDirectory(self chat.Host, ttl time.Duration) *Directory {
	return &Directory{self: self.HostID, ttl: ttl, now: time.Now, hosts: map[string]chat.Host{self.HostID: self}}
}

// Update replaces the view with hosts as read from Redis (self is kept).
func (d *Directory) Update(hosts []chat.Host) {
	m := make(map[string]chat.Host, len(hosts)+1)
	for _, h := range hosts {
		m[h.HostID] = h
	}
	d.mu.Lock()
	if _, ok := m[d.self]; !ok {
		m[d.self] = d.hosts[d.self]
	}
	d.hosts = m
	d.read = d.now()
	if !d.failedAt.IsZero() {
		d.graceFrom, d.graceUntil = d.failedAt, d.read.Add(d.ttl)
		d.failedAt = time.Time{}
	}
	d.mu.Unlock()
}

// ReadFailed notes that Redis could not be read (a failed refresh or lookup).
func (d *Directory) ReadFailed() {
	d.mu.Lock()
	if d.failedAt.IsZero() {
		d.failedAt = d.now()
	}
	d.mu.Unlock()
}

// SetSelf records this host's own registration (after each heartbeat).
func (d *Directory) SetSelf(h chat.Host) {
	d.mu.Lock()
	d.hosts[d.self] = h
	d.mu.Unlock()
}

// freshLocked reports whether h's heartbeat is fresh, or h was alive when the last
// Redis outage began and has not yet had a TTL to beat since (see failedAt). The
// caller holds d.mu.
func (d *Directory) freshLocked(h chat.Host) bool {
	now := d.now()
	if now.Sub(h.LastHeartbeat) < d.ttl {
		return true
	}
	return now.Before(d.graceUntil) && d.graceFrom.Sub(h.LastHeartbeat) < d.ttl
}

// AliveInstance reports whether an entry written by instance of hostID is current: the
// host is alive and has not restarted since (a restart has a new instance).
func (d *Directory) AliveInstance(hostID, instance string) bool {
	d.mu.RLock()
	defer d.mu.RUnlock()
	h, ok := d.hosts[hostID]
	if !ok || (instance != "" && h.Instance != instance) {
		return false
	}
	return hostID == d.self || d.freshLocked(h)
}

// Live returns every host AliveInstance holds alive, this one included.
func (d *Directory) Live() []chat.Host {
	return d.where(func(id string, h chat.Host) bool { return id == d.self || d.freshLocked(h) })
}

// Host returns a host's registration.
func (d *Directory) Host(hostID string) (chat.Host, bool) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	h, ok := d.hosts[hostID]
	return h, ok
}

// Known returns every other host that was alive when the list was last read from
// Redis: while Redis cannot be read, live delivery goes to each of them (section 4.5),
// however long the outage; Others would soon return none, as their heartbeats age.
func (d *Directory) Known() []chat.Host {
	return d.where(func(id string, h chat.Host) bool { return id != d.self && d.read.Sub(h.LastHeartbeat) < d.ttl })
}

// Others returns every other host whose heartbeat is fresh.
func (d *Directory) Others() []chat.Host {
	return d.where(func(id string, h chat.Host) bool { return id != d.self && d.freshLocked(h) })
}

// Silent returns every other host still registered whose heartbeat is not fresh: dead,
// or alive but cut off from Redis. Nothing can be handed to it now, and it may come
// back with its sockets open.
func (d *Directory) Silent() []chat.Host {
	return d.where(func(id string, h chat.Host) bool { return id != d.self && !d.freshLocked(h) })
}

// where returns the hosts keep accepts, under the read lock (keep may call the
// ...Locked helpers).
func (d *Directory) where(keep func(id string, h chat.Host) bool) []chat.Host {
	d.mu.RLock()
	defer d.mu.RUnlock()
	out := make([]chat.Host, 0, len(d.hosts))
	for id, h := range d.hosts {
		if keep(id, h) {
			out = append(out, h)
		}
	}
	return out
}
