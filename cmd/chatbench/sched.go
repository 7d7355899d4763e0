package main

import (
	"context"
	"time"
)

// Schedule emits events at a fixed offered rate, open-loop: event i is due at
// start + i/Rate whatever happened to the earlier ones, so a slow system shows up as
// latency, not as a lower rate. When emitting falls behind (the generator was
// descheduled), the events that are due go out at once to catch up.
type Schedule struct {
	Rate  float64 // events per second, > 0
	Total int64   // how many events to emit
	// Now and Sleep let tests drive a fake clock; nil means the real ones.
	Now   func() time.Time
	Sleep func(time.Duration)
}

// Due returns how many events are due elapsed after the start: the number of i with
// At(i, rate) <= elapsed, so one is due at 0.
func Due(elapsed time.Duration, rate float64) int64 {
	if elapsed < 0 {
		return 0
	}
	k := int64(elapsed.Seconds()*rate) + 1
	for At(k, rate) <= elapsed { // float rounding: agree with At exactly
		k++
	}
	for k > 0 && At(k-1, rate) > elapsed {
		k--
	}
	return k
}

// At returns when event i is due, relative to the start.
func At(i int64, rate float64) time.Duration {
	return time.Duration(float64(i) / rate * float64(time.Second))
}

// Run emits events 0..Total-1 by calling emit(i, due) in order, each no earlier than
// it is due; it returns how many it emitted (fewer only when ctx ended). emit must not
// wait for answers; if it blocks, later events are emitted late and in a burst.
func (s *Schedule) Run(ctx context.Context, emit func(i int64, due time.Time)) int64 {
	now, sleep := s.Now, s.Sleep
	if now == nil {
		now = time.Now
	}
	if sleep == nil {
		sleep = time.Sleep
	}
	if s.Rate <= 0 || s.Total <= 0 {
		return 0
	}
	start := now()
	var i int64
	for i < s.Total {
		if ctx.Err() != nil {
			return i
		}
		due := min(Due(now().Sub(start), s.Rate), s.Total)
		for ; i < due; i++ {
			emit(i, start.Add(At(i, s.Rate)))
		}
		if i >= s.Total {
			break
		}
		if wait := start.Add(At(i, s.Rate)).Sub(now()); wait > 0 {
			sleep(wait)
		}
	}
	return i
}
