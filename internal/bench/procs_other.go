//go:build !linux

package bench

import "syscall"

// childAttr: without Pdeathsig, children stop by themselves at the run's
// deadline and when their stdin closes.
func childAttr() *syscall.SysProcAttr { return nil }
