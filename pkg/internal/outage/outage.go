// Package outage keeps the state a caller needs to stop waiting on a dependency that
// failed: whether it is down, and when the next probe of it is due. The send path
// checks Down and goes around the dependency; only probes, off that path, find it
// back. Retrying on a caller's request instead made a hung Redis cost that caller, and
// everyone queued behind it, a timeout again and again.
package outage

import (
	"sync/atomic"
	"time"
)

// State is one dependency's outage; the zero value is up. Safe for concurrent use.
type State struct {
	down atomic.Bool
	next atomic.Int64 // unix ns before which no probe is due
}

// Down reports whether the dependency failed and no probe has found it back since.
func (s *State) Down() bool { return s.down.Load() }

// Fail marks the dependency down and reports whether this call began the outage (the
// caller logs it then, once). The first probe is due at once, so that after a failure
// on a blip (a moment's overload) the dependency is back with the next call.
func (s *State) Fail() bool {
	if !s.down.CompareAndSwap(false, true) {
		return false
	}
	s.next.Store(0)
	return true
}

// ProbeDue reports whether the caller should probe now: the dependency is down and no
// probe was let through within every. Probes never overlap as long as each ends
// within every.
func (s *State) ProbeDue(every time.Duration) bool {
	if !s.down.Load() {
		return false
	}
	now := time.Now().UnixNano()
	next := s.next.Load()
	return now >= next && s.next.CompareAndSwap(next, now+int64(every))
}

// Recover marks the dependency up after a probe found it answering and reports
// whether this call ended the outage (the caller logs it then, once).
func (s *State) Recover() bool { return s.down.CompareAndSwap(true, false) }
