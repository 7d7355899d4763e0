package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func statLine(pid, name string, utime, stime string) string {
	// pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime ...
	return pid + " (" + name + ") S 1 1 1 0 -1 4194560 100 0 0 0 " + utime + " " + stime + " 0 0 20 0 1 0 100 0 0\n"
}

func TestParseProcStat(t *testing.T) {
	name, ticks, ok := parseProcStat(statLine("42", "a (b) c", "120", "30"))
	if !ok || name != "a (b) c" || ticks != 150 {
		t.Fatalf("got %q %d %v, want \"a (b) c\" 150 true", name, ticks, ok)
	}
	if name, _, _ := parseProcStat(statLine("9", "kworker/1:1H-kblockd", "1", "1")); name != "kworker" {
		t.Errorf("a kernel worker is named %q, want kworker", name)
	}
	for _, bad := range []string{"", "42 noparens S 1", "42 (short) S 1 2 3", statLine("1", "x", "u", "1")} {
		if _, _, ok := parseProcStat(bad); ok {
			t.Errorf("parseProcStat(%q) ok, want not", bad)
		}
	}
}

func TestProcCPUDelta(t *testing.T) {
	before := map[int]procSample{1: {"chatd", 100}, 2: {"postgres", 50}, 3: {"gone", 10}, 6: {"chatd", 40}}
	after := map[int]procSample{
		1: {"chatd", 300},    // +200
		2: {"postgres", 150}, // +100
		4: {"postgres", 20},  // a backend started meanwhile: all of it
		5: {"tiny", 1},       // under 2 % of the total: other
		6: {"redis", 30},     // the pid now belongs to another program: counted from zero
	}
	p := procCPUDelta(before, after, 1000)
	// 351 ticks = 3.51 s over 1,000 messages.
	want := map[string]float64{"chatd": 2000, "postgres": 1200, "redis": 300, "other": 10}
	if len(p.PerMessageUS) != len(want) {
		t.Fatalf("got %v, want %v", p.PerMessageUS, want)
	}
	for k, v := range want {
		if got := p.PerMessageUS[k]; got < v-0.01 || got > v+0.01 {
			t.Errorf("%s: %.2f µs per message, want %.0f", k, got, v)
		}
	}
	if p.TotalUS < 3509.99 || p.TotalUS > 3510.01 || p.Seconds != 3.51 {
		t.Errorf("total %.2f µs, %.2f s; want 3510 and 3.51", p.TotalUS, p.Seconds)
	}
	if s := p.String(); !strings.HasPrefix(s, "chatd 2000, postgres 1200, redis 300, other 10 µs per message; 3510 in all") {
		t.Errorf("String() = %q", s)
	}
	if procCPUDelta(before, after, 0) != nil || procCPUDelta(nil, after, 10) != nil {
		t.Error("no messages or no first reading must give no result")
	}
}

func TestReadProcCPU(t *testing.T) {
	root := t.TempDir()
	for pid, line := range map[string]string{"7": statLine("7", "chatd", "5", "6"), "8": "garbage", "self": statLine("9", "x", "1", "1")} {
		if err := os.MkdirAll(filepath.Join(root, pid), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, pid, "stat"), []byte(line), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	got := readProcCPU(root)
	if len(got) != 1 || got[7] != (procSample{"chatd", 11}) {
		t.Fatalf("got %v, want only pid 7: chatd 11 ticks", got)
	}
	if readProcCPU(filepath.Join(root, "none")) != nil {
		t.Error("a missing tree must read as nil")
	}
	if _, err := os.Stat("/proc/self/stat"); err == nil {
		if _, ok := readProcCPU("/proc")[os.Getpid()]; !ok {
			t.Error("this test's own process is missing from /proc")
		}
	}
}
