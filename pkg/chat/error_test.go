package chat_test

import (
	"strings"
	"testing"
	"time"

	"github.com/switchboard-chat/switchboard/pkg/chat"
)

// The rate_limited message names the same whole seconds as the Retry-After header
// (rounded up, never 0), so a client reading either waits long enough.
func TestRateLimitedMessageRoundsUp(t *testing.T) {
	for _, c := range []struct {
		after time.Duration
		want  string
	}{
		{0, "retry in 1s"},
		{100 * time.Millisecond, "retry in 1s"},
		{time.Second, "retry in 1s"},
		{1100 * time.Millisecond, "retry in 2s"},
		{1500 * time.Millisecond, "retry in 2s"},
		{3 * time.Minute, "retry in 180s"},
	} {
		if e := chat.RateLimited(c.after); !strings.HasSuffix(e.Message, c.want) || e.RetryAfter != c.after {
			t.Errorf("RateLimited(%v) = %q (retry after %v), want %q", c.after, e.Message, e.RetryAfter, c.want)
		}
	}
}
