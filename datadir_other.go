//go:build !(linux || darwin || dragonfly || freebsd || netbsd || openbsd)

package main

import "os"

// lockFile does nothing where flock(2) is missing: there, two servers on
// one DIR are not refused, and must not be started.
func lockFile(*os.File) error { return nil }
