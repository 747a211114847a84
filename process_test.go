package main

// Programs run by the tests as processes of their own: the roomchat
// command itself (this test binary, standing in for it), and the real
// nginx and Prometheus the deployment tests start.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// startMain runs the roomchat command (this test binary, as runMain runs
// it) with args until the test ends, when it gets SIGTERM, as systemd
// stops it; it must exit within shutdownTimeout and a second. startMain
// returns once the server says it is listening, with its log so far and to
// come.
func startMain(t testing.TB, args ...string) *syncBuffer {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), mainArgsEnv+"="+strings.Join(args, "\n"))
	out, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var log syncBuffer
	listening := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		lines := bufio.NewScanner(out)
		for seen := false; lines.Scan(); {
			fmt.Fprintln(&log, lines.Text())
			if !seen && strings.Contains(lines.Text(), "roomchat listening") {
				seen = true
				close(listening)
			}
		}
	}()
	exited := make(chan error, 1)
	go func() { <-done; exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("roomchat exited with %v after SIGTERM:\n%s", err, log.String())
			}
		case <-time.After(shutdownTimeout + time.Second):
			cmd.Process.Kill()
			t.Errorf("roomchat still running %v after SIGTERM", shutdownTimeout+time.Second)
		}
	})
	select {
	case <-listening:
	case err := <-exited:
		exited <- err
		t.Fatalf("roomchat %s exited: %v\n%s", strings.Join(args, " "), err, log.String())
	case <-time.After(10 * time.Second):
		t.Fatalf("roomchat not listening after 10 s:\n%s", log.String())
	}
	return &log
}

// parseJSONLog parses a log of one JSON object a line.
func parseJSONLog(t testing.TB, log string) []map[string]any {
	t.Helper()
	var entries []map[string]any
	for line := range strings.Lines(log) {
		var e map[string]any
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("not a JSON line: %q: %v", line, err)
		}
		entries = append(entries, e)
	}
	return entries
}

// startProgram starts cmd, in a process group of its own, and waits until
// it accepts connections on addr; it stops the program (SIGTERM, then
// SIGKILL after 5 s) when the test ends. log says what the program said,
// should it exit early.
func startProgram(t *testing.T, cmd *exec.Cmd, addr string, log func() string) {
	t.Helper()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var mu sync.Mutex
	var waitErr error
	go func() {
		err := cmd.Wait()
		mu.Lock()
		waitErr = err
		mu.Unlock()
		close(exited)
	}()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	})
	name := filepath.Base(cmd.Path)
	waitFor(t, func() string { return name + " to listen on " + addr }, func() bool {
		select {
		case <-exited:
			mu.Lock()
			defer mu.Unlock()
			t.Fatalf("%s exited: %v\n%s", name, waitErr, log())
		default:
		}
		conn, err := net.Dial("tcp", addr)
		if err == nil {
			conn.Close()
		}
		return err == nil
	})
}
