package main

// A redis-server of a test's own: started on a free loopback port, with
// persistence off and its files in a temporary folder, stopped when the
// test ends; and a certificate for the tests that speak TLS to it.

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	cryptorand "crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// redisServer is a redis-server of a test's own.
type redisServer struct {
	t        testing.TB
	bin      string
	port     int
	dir      string
	password string
	extra    []string // more arguments for redis-server
	cmd      *exec.Cmd
}

// startRedis starts redis-server on a free loopback port, with persistence
// off and its files in a temporary folder, and stops it when the test ends.
// A password, if not empty, is required of clients; extra arguments go to
// redis-server as they are.
func startRedis(t testing.TB, password string, extra ...string) *redisServer {
	t.Helper()
	bin := os.Getenv("ROOMCHAT_REDIS_SERVER")
	if bin == "" {
		bin, _ = exec.LookPath("redis-server")
	}
	if bin == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("redis-server is missing; .ci/run installs it (apt-get install redis-server)")
		}
		t.Skip("redis-server not found: sudo apt-get install redis-server, or set ROOMCHAT_REDIS_SERVER")
	}
	r := &redisServer{t: t, bin: bin, port: freePort(t), dir: t.TempDir(), password: password, extra: extra}
	r.start()
	t.Cleanup(r.stop)
	return r
}

// start runs the server and returns once it says it is ready.
func (r *redisServer) start() {
	r.t.Helper()
	args := []string{"--port", strconv.Itoa(r.port), "--bind", "127.0.0.1", "--dir", r.dir,
		"--save", "", "--appendonly", "no", "--logfile", ""}
	if r.password != "" {
		args = append(args, "--requirepass", r.password)
	}
	cmd := exec.Command(r.bin, append(args, r.extra...)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		r.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	ready := make(chan error, 1)
	go func() {
		var log strings.Builder
		lines := bufio.NewScanner(out)
		for lines.Scan() {
			log.WriteString(lines.Text() + "\n")
			if strings.Contains(lines.Text(), "Ready to accept connections") {
				ready <- nil
				io.Copy(io.Discard, out) // keep the pipe open until it exits
				return
			}
		}
		ready <- fmt.Errorf("redis-server stopped before it was ready:\n%s", log.String())
	}()
	select {
	case err := <-ready:
		if err != nil {
			r.t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		r.t.Fatal("redis-server not ready after 10 s")
	}
	r.cmd = cmd
}

// stop kills the server, as a crash would, and waits for it to exit.
func (r *redisServer) stop() {
	if r.cmd == nil {
		return
	}
	r.cmd.Process.Signal(syscall.SIGCONT) // in case it was stopped
	r.cmd.Process.Kill()
	r.cmd.Wait()
	r.cmd = nil
}

// signal sends sig to the server.
func (r *redisServer) signal(sig syscall.Signal) {
	if r.cmd != nil {
		r.cmd.Process.Signal(sig)
	}
}

// url is the server's address for -redis, with its password if it has one.
func (r *redisServer) url() string { return r.addrURL(r.password) }

// addrURL is the server's address with a given password.
func (r *redisServer) addrURL(password string) string {
	if password == "" {
		return fmt.Sprintf("redis://127.0.0.1:%d", r.port)
	}
	return fmt.Sprintf("redis://:%s@127.0.0.1:%d", password, r.port)
}

// do runs one command on a connection of its own and returns the reply.
func (r *redisServer) do(t testing.TB, args ...string) any {
	t.Helper()
	conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", r.port), recvTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(recvTimeout))
	in, out := bufio.NewReader(conn), bufio.NewWriter(conn)
	if r.password != "" {
		writeCommand(out, []byte("AUTH"), []byte(r.password))
	}
	var cmd [][]byte
	for _, a := range args {
		cmd = append(cmd, []byte(a))
	}
	writeCommand(out, cmd...)
	if err := out.Flush(); err != nil {
		t.Fatal(err)
	}
	if r.password != "" {
		if _, err := readReply(in); err != nil {
			t.Fatal(err)
		}
	}
	reply, err := readReply(in)
	if err != nil {
		t.Fatal(err)
	}
	return reply
}

// writeTestCertificate writes a self-signed certificate for localhost and
// its key, cert.pem and key.pem, into dir.
func writeTestCertificate(t testing.TB, dir string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), cryptorand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	template := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "roomchat test"},
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	cert, err := x509.CreateCertificate(cryptorand.Reader, template, template, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	for name, block := range map[string]*pem.Block{
		"cert.pem": {Type: "CERTIFICATE", Bytes: cert},
		"key.pem":  {Type: "EC PRIVATE KEY", Bytes: der},
	} {
		if err := os.WriteFile(dir+"/"+name, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}
