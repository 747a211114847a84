package main

// Attack mode (loadchat -attack NAME -pid PID): what one hostile client
// costs the server, measured from outside. Each attack prints one JSON
// line. Start the server with -max-per-client 0 for "declared", which opens
// more connections from one address than the default lets in.
//
//	declared       -attack-conns connections each send one 14-byte header that
//	               declares a 65,536-byte text message, and nothing more:
//	               server RSS per connection, before and after the headers
//	pings, pongs,  one connection sends that frame as fast as it can, for at
//	continuations  most -attack-for: how long until the server closes it, with
//	               what code, and the server's CPU meanwhile
//	huge           one connection declares a message of 2^63-1 bytes and sends
//	               zeros: how many bytes it could write before the cut

import (
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/gorilla/websocket"
)

var (
	attack      = flag.String("attack", "", "attack mode: declared, pings, pongs, continuations or huge (needs -pid); see attack.go")
	attackConns = flag.Int("attack-conns", 2000, "attack declared: connections")
	attackFor   = flag.Duration("attack-for", 5*time.Second, "attacks of one connection: the longest they go on")
)

// rawHeader is a masked client frame header with a zero mask (the payload
// goes as it is): first byte, then the declared length.
func rawHeader(b0 byte, length uint64) []byte {
	h := []byte{b0}
	switch {
	case length < 126:
		h = append(h, 0x80|byte(length))
	case length <= 0xffff:
		h = binary.BigEndian.AppendUint16(append(h, 0x80|126), uint16(length))
	default:
		h = binary.BigEndian.AppendUint64(append(h, 0x80|127), length)
	}
	return append(h, 0, 0, 0, 0)
}

func attackMode(o *obj) {
	if *pid == 0 {
		fmt.Fprintln(os.Stderr, "loadchat: -attack needs -pid")
		os.Exit(2)
	}
	o.set("mode", "attack")
	o.set("attack", *attack)
	switch *attack {
	case "declared":
		declaredAttack(o)
	case "pings":
		floodAttack(o, nil, append(rawHeader(0x89, 4), "ping"...))
	case "pongs":
		floodAttack(o, nil, rawHeader(0x8a, 0))
	case "continuations":
		floodAttack(o, rawHeader(0x01, 0), rawHeader(0x00, 0))
	case "huge":
		floodAttack(o, rawHeader(0x81, 1<<63-1), make([]byte, 64<<10))
	default:
		fmt.Fprintf(os.Stderr, "loadchat: unknown attack %q\n", *attack)
		os.Exit(2)
	}
}

// declaredAttack measures server memory per connection when every one of
// them has declared a maximal message and sent none of it.
func declaredAttack(o *obj) {
	rss0, _ := procRSSMB(*pid)
	cs, n := dialIdle(*attackConns, 50)
	time.Sleep(*idleWait)
	rss1, _ := procRSSMB(*pid)
	for _, c := range cs {
		if c.ws != nil {
			c.ws.NetConn().Write(rawHeader(0x81, 65536))
		}
	}
	time.Sleep(*idleWait)
	rss2, _ := procRSSMB(*pid)
	o.set("connections", n)
	o.set("server_rss_mb_before", round3(rss0))
	o.set("idle_kib_per_conn", round3((rss1-rss0)*1024/float64(n)))
	o.set("declared_kib_per_conn", round3((rss2-rss0)*1024/float64(n)))
	o.set("extra_kib_per_conn", round3((rss2-rss1)*1024/float64(n)))
	for _, c := range cs {
		if c.ws != nil {
			c.ws.Close()
		}
	}
}

// floodAttack sends start once, then frame again and again, until the
// server closes the connection or -attack-for passes.
func floodAttack(o *obj, start, frame []byte) {
	c, _, err := dialer().Dial(*baseURL+"attack/", header())
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadchat:", err)
		os.Exit(1)
	}
	defer c.Close()
	closed := make(chan int, 1) // the close code, 0 for none
	go func() {
		for {
			if _, _, err := c.ReadMessage(); err != nil {
				var ce *websocket.CloseError
				if errors.As(err, &ce) {
					closed <- ce.Code
				} else {
					closed <- 0
				}
				return
			}
		}
	}()
	burst := make([]byte, 0, 64<<10)
	for len(burst)+len(frame) <= cap(burst) {
		burst = append(burst, frame...)
	}
	conn := c.NetConn()
	cpu0, _ := procCPU(*pid)
	t0 := time.Now()
	var written int64
	if n, err := conn.Write(start); err == nil {
		written += int64(n)
	}
	deadline := t0.Add(*attackFor)
	code := -1
loop:
	for time.Now().Before(deadline) {
		select {
		case code = <-closed:
			break loop
		default:
		}
		conn.SetWriteDeadline(deadline)
		n, err := conn.Write(burst)
		written += int64(n)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				break
			}
			select {
			case code = <-closed:
			case <-time.After(time.Second):
			}
			break loop
		}
	}
	elapsed := time.Since(t0).Seconds()
	cpu1, _ := procCPU(*pid)
	o.set("closed_after_s", round3(elapsed))
	o.set("close_code", code) // -1: still open at the end; 0: dropped without a code
	o.set("bytes_written", written)
	o.set("frames_written", written/int64(len(frame)))
	o.set("server_cpu_s", round3(cpu1-cpu0))
	o.set("server_cpu_util", round3((cpu1-cpu0)/elapsed))
}
