package bench

import "syscall"

// childAttr makes the kernel kill a child if the coordinator dies without
// stopping it (a crash, a SIGKILL), so that no load generator outlives
// its run.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
