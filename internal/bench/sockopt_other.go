//go:build !linux

package bench

import "syscall"

// bindNoPort is a Linux socket option; elsewhere the port is chosen at
// bind time.
func bindNoPort(_, _ string, _ syscall.RawConn) error { return nil }
