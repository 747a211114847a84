package main

// The presence storm: a room of 1,000 members joining at once, all asking
// for presence, against the same storm without it. The server runs as a
// process of its own, so that its CPU is its alone:
//
//	go test -run '^$' -bench PresenceStorm -benchtime 1x -count 3 .
//
// reports the server's CPU per join, and the frames each member receives.

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/websocket"
)

const stormMembers = 1000

func BenchmarkPresenceStorm(b *testing.B) {
	bin := filepath.Join(b.TempDir(), "roomchat")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	for _, query := range []string{"", "?presence&name="} {
		name := map[string]string{"": "plain", "?presence&name=": "presence"}[query]
		b.Run(name, func(b *testing.B) {
			for range b.N {
				cpu, frames := storm(b, bin, query)
				b.ReportMetric(float64(cpu.Microseconds())/stormMembers, "server-µs/join")
				b.ReportMetric(frames, "frames/member")
			}
		})
	}
}

// storm joins stormMembers to one room of a fresh server within a second
// or so, waits a second more, and returns the server's CPU time and the
// frames a member received on average.
func storm(b *testing.B, bin, query string) (time.Duration, float64) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(bin, "-addr", addr, "-rate", "0", "-max-per-client", "0")
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	for i := 0; ; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		if i > 200 {
			b.Fatal("server did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
	before := cpuOf(b, cmd.Process.Pid)
	var frames atomic.Int64
	var wg sync.WaitGroup
	conns := make([]*websocket.Conn, 0, stormMembers)
	for i := range stormMembers {
		url := "ws://" + addr + "/ws/chat/storm/"
		if query != "" {
			url += query + fmt.Sprintf("m%04d", i)
		}
		c, err := websocket.Dial(url, "", "http://"+addr)
		if err != nil {
			b.Fatal(err)
		}
		conns = append(conns, c)
		wg.Go(func() {
			var msg string
			for websocket.Message.Receive(c, &msg) == nil {
				frames.Add(1)
			}
		})
	}
	time.Sleep(time.Second + presenceEvery) // the last diff, and its sending
	cpu := cpuOf(b, cmd.Process.Pid) - before
	for _, c := range conns {
		c.Close()
	}
	wg.Wait()
	return cpu, float64(frames.Load()) / stormMembers
}

// cpuOf is a process's user and system CPU time, from /proc.
func cpuOf(b *testing.B, pid int) time.Duration {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Skip("no /proc: ", err)
	}
	fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond // USER_HZ is 100 on Linux
}
