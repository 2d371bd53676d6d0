package bench

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// bindNoPort lets the kernel choose a bound socket's port at connect time,
// from the whole 4-tuple, instead of at bind time from the ports free on
// the source address for every destination. Without it, each source
// address is good for at most ~28 000 connections (the ephemeral range),
// and finding a free port gets slower the fuller the range is.
func bindNoPort(_, _ string, c syscall.RawConn) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
	}); err != nil {
		return err
	}
	return serr
}
