package main

// This file is memory machinery, and can be skipped on a first reading:
// what keeps an idle connection small.
//
// A goroutine's stack grows to fit the deepest call it ever makes, and the
// garbage collector shrinks it only while the goroutine uses less than a
// quarter of it. A connection's goroutine lives as long as the connection
// and spends nearly all of it waiting for the next frame. So it waits at
// the top of its stack (waitForFrame), and runs whatever goes deep
// (decoding JSON, formatting a log line) on a goroutine borrowed for the
// purpose (onSpareStack): an idle connection's stack then stays at the
// smallest size Go gives. docs/performance.md has the figures.

import "bufio"

// waitForFrame returns once the next frame has begun to arrive, or with the
// read's error. It waits in a one-byte Peek, a shallow call, so that the
// goroutine is near the top of its stack while it waits, which is nearly
// always.
func waitForFrame(in *bufio.Reader) error {
	_, err := in.Peek(1)
	return err
}

// onSpareStack runs f on a short-lived goroutine and waits for it, so that
// the stack f needs is borrowed and given back, not kept by the caller for
// the rest of its life.
func onSpareStack(f func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	<-done
}

// keptQueueCap is the largest queue array an idle connection keeps for
// reuse (24 bytes a slot): client.writeLoop swaps two arrays, and keeps
// them between writers, so that a busy connection allocates nothing per
// frame.
const keptQueueCap = 16

// keepSmall empties a queue array for reuse, unless a burst made it big:
// an idle connection should not hold on to that.
func keepSmall(q [][]byte) [][]byte {
	if cap(q) > keptQueueCap {
		return nil
	}
	return q[:0]
}
