package ws

import "time"

// SetWriterLinger sets how long the hub's idle writers wait for more frames, for tests
// that start and end writers many times. Call it before the first socket connects.
func (h *Hub) SetWriterLinger(d time.Duration) { h.linger = d }

// SetCorking turns the gathering of queued frames into one write on or off, for
// benchmarks that compare the two.
func SetCorking(on bool) { corking.Store(on) }
