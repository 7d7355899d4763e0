package main

import (
	"context"
	"testing"
	"time"
)

// fakeClock is a clock that moves only when told to (Sleep, or the test's emit).
type fakeClock struct{ t time.Time }

func (c *fakeClock) Now() time.Time          { return c.t }
func (c *fakeClock) Sleep(d time.Duration)   { c.t = c.t.Add(d) }
func (c *fakeClock) Advance(d time.Duration) { c.t = c.t.Add(d) }

func TestDueAgreesWithAt(t *testing.T) {
	t.Parallel()
	for _, rate := range []float64{1, 3, 7.5, 1000, 3333, 10000, 123457} {
		for i := int64(0); i < 5000; i++ {
			at := At(i, rate)
			if got := Due(at, rate); got != i+1 {
				t.Fatalf("rate %g: Due(At(%d)) = %d, want %d", rate, i, got, i+1)
			}
			if at > 0 {
				if got := Due(at-1, rate); got != i {
					t.Fatalf("rate %g: Due(At(%d)-1ns) = %d, want %d", rate, i, got, i)
				}
			}
		}
	}
	if Due(-time.Second, 100) != 0 {
		t.Fatal("nothing is due before the start")
	}
}

func TestScheduleOpenLoop(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		rate  float64
		total int64
		// cost is how long each emit takes on the fake clock (a slow generator).
		cost time.Duration
	}{
		{"1000/s, instant emits", 1000, 5000, 0},
		{"7/s", 7, 50, 0},
		{"10000/s, instant", 10000, 20000, 0},
		// Emits take 3x their interval: the schedule must not slow down to the
		// emitter's pace in total (open loop), it bursts to catch up.
		{"500/s, slow emitter", 500, 3000, 6 * time.Millisecond},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			clk := &fakeClock{t: time.Unix(1000, 0)}
			start := clk.Now()
			s := &Schedule{Rate: tc.rate, Total: tc.total, Now: clk.Now, Sleep: clk.Sleep}
			var n int64
			var prevDue time.Time
			n = s.Run(context.Background(), func(i int64, due time.Time) {
				if i != n {
					t.Fatalf("event %d emitted as %d", n, i)
				}
				if want := start.Add(At(i, tc.rate)); !due.Equal(want) {
					t.Fatalf("event %d due %v, want %v", i, due.Sub(start), want.Sub(start))
				}
				if clk.Now().Before(due) {
					t.Fatalf("event %d emitted %v before it was due", i, due.Sub(clk.Now()))
				}
				if i > 0 && due.Before(prevDue) {
					t.Fatalf("due times go backwards at %d", i)
				}
				prevDue = due
				n++
				clk.Advance(tc.cost)
			})
			if n != tc.total {
				t.Fatalf("emitted %d, want %d", n, tc.total)
			}
			elapsed := clk.Now().Sub(start)
			ideal := At(tc.total-1, tc.rate)
			if tc.cost == 0 && elapsed != ideal {
				t.Fatalf("took %v on the fake clock, want exactly %v", elapsed, ideal)
			}
			if tc.cost > 0 {
				// Closed loop would take total*cost; open loop never waits when behind,
				// so it takes total*cost too (the emitter is the bottleneck) but every
				// event was emitted as soon as the emitter was free: no sleeps.
				if elapsed != time.Duration(tc.total)*tc.cost {
					t.Fatalf("slow emitter: took %v, want %v (no sleeping while behind)", elapsed, time.Duration(tc.total)*tc.cost)
				}
			}
		})
	}
}

func TestScheduleCatchesUpInABurst(t *testing.T) {
	t.Parallel()
	clk := &fakeClock{t: time.Unix(0, 0)}
	s := &Schedule{Rate: 1000, Total: 100, Now: clk.Now, Sleep: clk.Sleep}
	var emitTimes []time.Duration
	s.Run(context.Background(), func(i int64, due time.Time) {
		emitTimes = append(emitTimes, clk.Now().Sub(time.Unix(0, 0)))
		if i == 10 {
			clk.Advance(50 * time.Millisecond) // the generator was descheduled
		}
	})
	// Events 11..60 were due during the stall: all emitted at 60 ms, at once.
	for i := 11; i <= 60; i++ {
		if emitTimes[i] != 60*time.Millisecond {
			t.Fatalf("event %d emitted at %v, want 60ms (burst)", i, emitTimes[i])
		}
	}
	if emitTimes[61] != 61*time.Millisecond {
		t.Fatalf("event 61 at %v: the schedule should be back on time", emitTimes[61])
	}
}

func TestScheduleStopsWithContext(t *testing.T) {
	t.Parallel()
	clk := &fakeClock{t: time.Unix(0, 0)}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Schedule{Rate: 100, Total: 1000, Now: clk.Now, Sleep: clk.Sleep}
	n := s.Run(ctx, func(i int64, _ time.Time) {
		if i == 41 {
			cancel()
		}
	})
	if n != 42 {
		t.Fatalf("emitted %d after cancel at 41, want 42", n)
	}
}

func TestScheduleRealClockRate(t *testing.T) {
	t.Parallel()
	s := &Schedule{Rate: 2000, Total: 400}
	start := time.Now()
	n := s.Run(context.Background(), func(int64, time.Time) {})
	took := time.Since(start)
	if n != 400 {
		t.Fatalf("emitted %d", n)
	}
	// 400 events at 2000/s: the last is due at 199.5 ms.
	if took < 195*time.Millisecond || took > 2*time.Second {
		t.Fatalf("took %v, want about 200ms", took)
	}
}
