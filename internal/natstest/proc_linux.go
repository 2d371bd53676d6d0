package natstest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// sysProcAttr makes the kernel kill a server if the test process dies
// without cleaning up (a crash, a SIGKILL from a test timeout).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// stopped reports whether every thread of process pid is stopped by a
// signal. kill(2) returns before SIGSTOP has stopped a running process, so
// Pause checks this; an unknown answer (no /proc) counts as yes.
func stopped(pid int) (bool, error) {
	stats, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
	if err != nil || len(stats) == 0 {
		return true, err
	}
	for _, p := range stats {
		b, err := os.ReadFile(p)
		if err != nil {
			if os.IsNotExist(err) { // a thread that just exited
				continue
			}
			return false, err
		}
		// pid (comm) state ...: the command may hold spaces and parentheses.
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) == 0 || f[0] != "T" {
			return false, nil
		}
	}
	return true, nil
}
