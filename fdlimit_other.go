//go:build !unix

package main

// fdLimit is how many descriptors the process may open: on systems without
// RLIMIT_NOFILE, as many as the connection limits will ever need.
func fdLimit() int { return 1 << 30 }
