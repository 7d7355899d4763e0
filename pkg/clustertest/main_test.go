package clustertest

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"
)

// TestMain builds chatd and chatctl once (plain builds: the processes need not run
// under the race detector, the test process does) unless CLUSTERTEST_CHATD and
// CLUSTERTEST_CHATCTL name binaries already.
func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "clustertest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "clustertest:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	for _, b := range []struct {
		env   string
		build func(context.Context, string) (string, error)
	}{{BinaryEnv, BuildChatd}, {ChatctlEnv, BuildChatctl}} {
		if os.Getenv(b.env) != "" {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		bin, err := b.build(ctx, dir)
		cancel()
		if err != nil {
			fmt.Fprintln(os.Stderr, "clustertest:", err)
			return 1
		}
		if err := os.Setenv(b.env, bin); err != nil {
			fmt.Fprintln(os.Stderr, "clustertest:", err)
			return 1
		}
	}
	return m.Run()
}
