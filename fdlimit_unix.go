//go:build unix

package main

import "syscall"

// fdLimit is how many descriptors the process may open. Go raises the soft
// limit to the hard one when it starts, so this is the hard limit.
func fdLimit() int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur > 1<<30 {
		return 1 << 30
	}
	return int(lim.Cur)
}
