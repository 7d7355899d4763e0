//go:build !linux

package rawio

import "net"

// Wrap returns c: outside Linux, connections keep package net's reads and writes.
func Wrap(c net.Conn) net.Conn { return c }
