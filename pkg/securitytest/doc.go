// Package securitytest holds Switchboard's black-box security and bad-input suite
// (issue 7, items 3 and 5): every input the contract refuses, fed to real in-process
// hosts on real PostgreSQL and Redis, each answered exactly and changing nothing; every
// limit of contract section 8 at the limit and one past it; the authorization matrix;
// sessions ending on every host; cookie, Origin and timing checks; and a sweep of every
// log line for tokens, passwords and the cluster secret.
//
// The package has no code of its own: everything is in its _test.go files, with the
// harness (hosts sharing stores, state snapshots, HTTP and WebSocket clients) in
// harness_test.go.
package securitytest
