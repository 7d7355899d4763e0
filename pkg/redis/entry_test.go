package redis

import (
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// TestDecodeEntryMatchesEncodingJSON: the scanner's answer must be what encoding/json
// makes of the same text, for the entries we write and for the odd ones it hands over.
func TestDecodeEntryMatchesEncodingJSON(t *testing.T) {
	since := time.Date(2026, 11, 26, 18, 1, 2, 345678900, time.UTC)
	written, _ := json.Marshal(entry{HostID: "host-1", ConnID: "0193a0b2-7c1d-7abc-8def-0123456789ab", Since: since, Instance: "i-9"})
	cases := []string{
		string(written),
		`{"host_id":"h","conn_id":"c","since":"2026-11-26T18:01:02Z"}`,
		`{"conn_id":"c","host_id":"h","since":"2026-11-26T18:01:02+01:00","instance":""}`,
		`{ "host_id": "h", "conn_id": "c" }`,            // whitespace: fallback
		`{"host_id":"h\u0041","conn_id":"c\"q"}`,        // escapes: fallback
		`{"host_id":"h","conn_id":"c","extra":1}`,       // unknown key, number: fallback
		`{"host_id":"h","conn_id":"c","since":"later"}`, // bad time: both fail
		`{"host_id":"h",}`,
		`{}`,
		`[]`,
		`not json`,
	}
	for _, c := range cases {
		var want entry
		wantErr := json.Unmarshal([]byte(c), &want)
		got, err := decodeEntry(c)
		if (err != nil) != (wantErr != nil) {
			t.Errorf("%s: error %v, encoding/json says %v", c, err, wantErr)
			continue
		}
		if err == nil && (got.HostID != want.HostID || got.ConnID != want.ConnID || got.Instance != want.Instance || !got.Since.Equal(want.Since)) {
			t.Errorf("%s: got %+v, encoding/json %+v", c, got, want)
		}
	}
	if _, ok := scanEntry(string(written)); !ok {
		t.Errorf("the entries AddConnections writes must take the fast path: %s", written)
	}
}

// FuzzDecodeEntry: whatever Redis holds, the scanner never disagrees with encoding/json
// about an entry both accept.
func FuzzDecodeEntry(f *testing.F) {
	f.Add(`{"host_id":"h","conn_id":"c","since":"2026-11-26T18:01:02Z","instance":"i"}`)
	f.Add(`{"host_id":"h\n"}`)
	f.Fuzz(func(t *testing.T, s string) {
		e, ok := scanEntry(s)
		if !ok {
			return
		}
		var want entry
		if err := json.Unmarshal([]byte(s), &want); err != nil {
			t.Fatalf("scanner accepted %q, encoding/json refused it: %v", s, err)
		}
		if e.HostID != want.HostID || e.ConnID != want.ConnID || e.Instance != want.Instance || !e.Since.Equal(want.Since) {
			t.Fatalf("%q: scanner %+v, encoding/json %+v", s, e, want)
		}
	})
}

// TestParseUTCMatchesTimeParse: the fast path reads the timestamps we write exactly as
// time.Parse does, and declines anything unusual.
func TestParseUTCMatchesTimeParse(t *testing.T) {
	for _, s := range []string{
		"2026-11-26T18:01:02Z", "2026-11-26T18:01:02.5Z", "2026-11-26T18:01:02.123456789Z",
		"2024-02-29T00:00:00.000001Z", "2026-04-31T00:00:00Z", "2026-13-01T00:00:00Z",
		"2026-11-26T18:01:02.Z", "2026-11-26T18:01:02.1234567891Z", "2026-11-26T18:01:02+01:00",
		"2026-11-26 18:01:02Z", "2026-11-26T24:00:00Z", "2026-11-26T18:60:00Z", "0000-01-01T00:00:00Z",
	} {
		want, err := time.Parse(time.RFC3339Nano, s)
		got, ok := parseUTC(s)
		if ok && (err != nil || !got.Equal(want)) {
			t.Errorf("%s: fast path %v, time.Parse %v, %v", s, got, want, err)
		}
		if !ok && err == nil && strings.HasSuffix(s, "Z") && len(s) <= 30 && s != "2026-11-26T18:01:02.Z" {
			t.Errorf("%s: fast path declined a timestamp in the form we write", s)
		}
	}
	for range 1000 {
		ts := time.Unix(0, rand.Int64N(1<<62)).UTC()
		s := ts.Format(time.RFC3339Nano)
		got, ok := parseUTC(s)
		if !ok || !got.Equal(ts) {
			t.Fatalf("%s: fast path %v, %v; want %v", s, got, ok, ts)
		}
	}
}
