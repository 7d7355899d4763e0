package outage

import (
	"testing"
	"time"
)

// An outage is begun and ended once each, whatever the number of callers; the first
// probe is due at once, the next only after the interval, and none while up.
func TestState(t *testing.T) {
	var s State
	if s.Down() || s.ProbeDue(time.Hour) {
		t.Fatal("the zero value is down or asks for a probe")
	}
	if !s.Fail() || s.Fail() {
		t.Fatal("Fail did not report beginning the outage exactly once")
	}
	if !s.Down() {
		t.Fatal("not down after Fail")
	}
	if !s.ProbeDue(50 * time.Millisecond) {
		t.Fatal("the first probe of an outage is not due at once")
	}
	if s.ProbeDue(50 * time.Millisecond) {
		t.Fatal("a second probe was due within the interval")
	}
	time.Sleep(60 * time.Millisecond)
	if !s.ProbeDue(50 * time.Millisecond) {
		t.Fatal("no probe due after the interval")
	}
	if !s.Recover() || s.Recover() {
		t.Fatal("Recover did not report ending the outage exactly once")
	}
	if s.Down() || s.ProbeDue(0) {
		t.Fatal("still down, or asking for probes, after Recover")
	}
}
