package clustertest

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"
)

// TestMain builds chatd once (a plain build: the processes need not run under the race
// detector, the test process does) unless CLUSTERTEST_CHATD names a binary already.
func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	if os.Getenv(BinaryEnv) == "" {
		dir, err := os.MkdirTemp("", "clustertest-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "clustertest:", err)
			return 1
		}
		defer os.RemoveAll(dir)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		bin, err := BuildChatd(ctx, dir)
		cancel()
		if err != nil {
			fmt.Fprintln(os.Stderr, "clustertest:", err)
			return 1
		}
		if err := os.Setenv(BinaryEnv, bin); err != nil {
			fmt.Fprintln(os.Stderr, "clustertest:", err)
			return 1
		}
	}
	return m.Run()
}
