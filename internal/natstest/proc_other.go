//go:build !linux

package natstest

import "syscall"

// sysProcAttr returns nil: only Linux can tie a child's life to its parent.
func sysProcAttr() *syscall.SysProcAttr { return nil }

// stopped cannot tell without /proc; it answers yes.
func stopped(pid int) (bool, error) { return true, nil }
