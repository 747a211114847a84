//go:build !race

package main

// The history's memory bound, held to in the process's memory, as an
// operator sees it: not the race detector's (which multiplies memory), so
// not under -race.

import (
	"bytes"
	"fmt"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestHistoryMemoryBound floods the real command, with its default limits,
// from 1,000 connections each alone in a room, each sending messages of
// 3,900 characters, 15 a second, for 6 s: every room keeps all it may, and
// all rooms together far more than historyMemory allows. The process's
// memory (its peak resident set) must grow by at most 1.5 times
// historyMemory over what it held before the flood. It is a load test: it
// runs with ROOMCHAT_LOAD=1, as .ci/run does, not in a plain go test.
func TestHistoryMemoryBound(t *testing.T) {
	if os.Getenv("ROOMCHAT_LOAD") == "" {
		t.Skip("set ROOMCHAT_LOAD=1 to run the flood (about 15 s)")
	}
	const (
		conns    = 1000
		perSec   = 15
		duration = 6 * time.Second
	)
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), mainArgsEnv+"="+strings.Join([]string{"-addr", addr, "-max-per-client", "0"}, "\n"))
	var logs syncBuffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	s := &testServer{Server: &httptest.Server{URL: "http://" + addr}}
	waitFor(t, func() string { return "the server to listen; its log:\n" + logs.String() }, func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})

	clients := make([]*rawConn, conns)
	for i := range clients {
		clients[i] = dialRaw(t, s.wsURL(fmt.Sprint("mem", i)))
	}
	s.waitHealth(t, func(h health) bool { return h.Connections == conns })
	before := processMemory(t, cmd.Process.Pid, "VmRSS")

	frame := clientFrame(true, opText, chat(strings.Repeat("x", 3900), "A"))
	var wg sync.WaitGroup
	stop := time.Now().Add(duration)
	for _, c := range clients {
		wg.Go(func() {
			tick := time.NewTicker(time.Second / perSec)
			defer tick.Stop()
			for now := range tick.C {
				if now.After(stop) {
					return
				}
				c.SetWriteDeadline(now.Add(recvTimeout))
				if _, err := c.Write(frame); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	// What the server had not read yet when the flood stopped, it reads now.
	var h health
	s.waitHealth(t, func(got health) bool {
		h = got
		return got.MessagesReceived >= conns*perSec*int64(duration/time.Second)*9/10
	})
	peak := processMemory(t, cmd.Process.Pid, "VmHWM")
	grew := peak - before
	t.Logf("%d messages kept, %d MiB; the process's memory grew from %d MiB to a peak of %d MiB: %d MiB, %.2f times the bound of %d MiB",
		h.Layer.HistoryMessages, h.Layer.HistoryBytes>>20, before>>20, peak>>20, grew>>20, float64(grew)/historyMemory, historyMemory>>20)
	if h.Layer.HistoryBytes > historyTotalBytes {
		t.Errorf("the histories hold %d bytes, over %d", h.Layer.HistoryBytes, historyTotalBytes)
	}
	if grew > historyMemory*3/2 {
		t.Errorf("the process's memory grew by %d MiB, over 1.5 times the bound of %d MiB", grew>>20, historyMemory>>20)
	}
}

// processMemory reads one of the memory figures of process pid's
// /proc/PID/status, such as VmRSS or VmHWM (its peak), in bytes.
func processMemory(t *testing.T, pid int, field string) int64 {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range bytes.Lines(status) {
		if rest, ok := bytes.CutPrefix(line, []byte(field+":")); ok {
			kib, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(string(rest)), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kib << 10
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}
