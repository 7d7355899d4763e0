package config_test

import (
	"io"
	"testing"
	"time"

	"github.com/switchboard-chat/switchboard/pkg/config"
)

// TestPingPongDefaults pins section 3 of the contract ("The server pings every 25 s
// and closes a socket from which nothing (pong or frame) has arrived for 60 s"): with
// nothing set, and with the shipped configs/chatd.yaml, the two settings are 25 s and
// 60 s, and CHAT_PING_INTERVAL / CHAT_PONG_TIMEOUT (and their flags) are the names
// that change them. TestDefaults checks neither, and TestExampleFileDocumentsEverySetting
// only that the file and the built-in defaults agree, which a change to both passes.
func TestPingPongDefaults(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		args       []string
		env        map[string]string
		ping, pong time.Duration
	}{
		{"nothing set", nil, nil, 25 * time.Second, 60 * time.Second},
		{"shipped file", []string{"--config", "../../configs/chatd.yaml"}, nil, 25 * time.Second, 60 * time.Second},
		{"env", nil, map[string]string{"CHAT_PING_INTERVAL": "7s", "CHAT_PONG_TIMEOUT": "9s"}, 7 * time.Second, 9 * time.Second},
		{"flags", []string{"--ping-interval", "300ms", "--pong-timeout", "2s"}, nil, 300 * time.Millisecond, 2 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := config.Load("chatd serve", tc.args, env(tc.env), io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.PingInterval != tc.ping || cfg.PongTimeout != tc.pong {
				t.Fatalf("ping interval %v, pong timeout %v; want %v and %v", cfg.PingInterval, cfg.PongTimeout, tc.ping, tc.pong)
			}
			if err := cfg.Validate(config.Requirements{}); err != nil {
				t.Fatalf("the settings do not validate: %v", err)
			}
		})
	}
}
