package ws

import "time"

// SetWriterLinger sets how long the hub's idle writers wait for more frames, for tests
// that start and end writers many times. Call it before the first socket connects.
func (h *Hub) SetWriterLinger(d time.Duration) { h.linger = d }
