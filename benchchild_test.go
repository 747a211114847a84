package main

// The benchmarks' child server: this test binary, run as roomchat in a
// process of its own, so that what a connection costs is measured apart
// from the clients; and the frame counter the benchmark clients read with.

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// countFrames reads server frames until the connection ends, calling got
// for each. It allocates nothing per frame.
func (c *rawConn) countFrames(got func()) {
	for {
		_, n, err := c.nextHeader()
		if err != nil {
			return
		}
		if _, err := c.r.Discard(int(n)); err != nil {
			return
		}
		got()
	}
}

// childServer is roomchat running in a child process.
type childServer struct {
	addr string
}

// childMem is what the child reports about itself.
type childMem struct {
	HeapInuse, StackInuse, RSS uint64
	Connections                int
	CPU                        time.Duration // user and system, all threads, since it started
}

// cpuTime is the CPU time this process has used, all its threads.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// serverProcessEnv makes this test binary run roomchat instead of tests.
const serverProcessEnv = "ROOMCHAT_CHILD_SERVER"

// heapProfileEnv names a file for the child's heap profile, written each
// time it is asked for its memory: where every KiB of a connection goes.
//
//	ROOMCHAT_HEAP_PROFILE=/tmp/heap.prof go test -run '^$' -bench IdleConnections
//	go tool pprof -sample_index=inuse_space -top /tmp/heap.prof
const heapProfileEnv = "ROOMCHAT_HEAP_PROFILE"

// runChildServer serves roomchat on a loopback port, prints the port, and
// adds GET /mem for the benchmark. It exits when its stdin closes.
func runChildServer() {
	profile := os.Getenv(heapProfileEnv)
	if profile != "" {
		runtime.MemProfileRate = 1 // every allocation, so that small ones add up exactly
	}
	// It logs as the real server does (text, at info), though to nowhere:
	// formatting a log line takes stack too.
	h := newHub(newMemoryBroker(defaultHistory), newRateLimit(0), slog.New(slog.NewTextHandler(io.Discard, nil)))
	secret, err := tokenSecretFrom(os.LookupEnv) // as the real server reads them
	if err != nil {
		panic(err)
	}
	apiKey, err := apiKeyFrom(os.LookupEnv)
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/", newMux(h, options{secret: secret, apiKey: apiKey}, nil))
	mux.HandleFunc("GET /mem", func(w http.ResponseWriter, r *http.Request) {
		cpu := cpuTime() // before the collection below, which is this call's
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		_, conns := h.counts()
		if profile != "" {
			if err := writeHeapProfile(profile); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
		}
		writeJSON(w, http.StatusOK, childMem{HeapInuse: ms.HeapInuse, StackInuse: ms.StackInuse, RSS: readRSS(), Connections: conns, CPU: cpu})
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	fmt.Println(ln.Addr())
	go http.Serve(ln, mux)
	io.Copy(io.Discard, os.Stdin)
}

// writeHeapProfile writes the heap profile of this process to path.
func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// startServerProcess starts the child, with env added to its environment,
// and stops it when the benchmark ends.
func startServerProcess(b *testing.B, env ...string) *childServer {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(append(os.Environ(), serverProcessEnv+"=1"), env...)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { stdin.Close(); cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		b.Fatalf("child server: %v", err)
	}
	return &childServer{addr: strings.TrimSpace(line)}
}

// mem asks the child how much memory it holds, after a garbage collection.
func (c *childServer) mem(b *testing.B) childMem {
	var m childMem
	getJSON(b, "http://"+c.addr+"/mem", &m)
	return m
}

// readRSS returns this process's resident set size in bytes (Linux).
func readRSS() uint64 {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kib, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kib * 1024
		}
	}
	return 0
}
