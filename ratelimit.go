package main

// This file meters what each connection sends, so that what a client costs
// the server stays bounded whatever it does: messages, the bytes they hold,
// and frames of every kind. Each is a token bucket of the connection's own.

import (
	"fmt"
	"time"
)

// Defaults of the per-connection limits (docs/protocol.md, Limits).
const (
	// defaultRate is the message rate: 20 text messages a second, with
	// bursts of twice that (the -rate flag).
	defaultRate = 20

	// bytesPerSecond bounds the text a connection may have decoded, with
	// bursts of twice that: decoding is the dearest work a message causes
	// (a 64 KiB object of many keys takes milliseconds), so its cost is
	// metered by size, not by count.
	bytesPerSecond = maxMessageBytes

	// framesPerMessage sets the frame rate from the message rate: every
	// frame (text, continuation, ping, pong, close) takes a token, and a
	// connection with none left is flooding and is closed (1008). Five
	// frames a message leaves room for an honest client's pings and pongs
	// and for messages in a few fragments.
	framesPerMessage = 5
)

// rateLimit is the per-connection limit set by -rate: perSecond text
// messages a second on average, with bursts up to twice that, and the byte
// and frame limits that go with it. perSecond 0 turns all three off.
type rateLimit struct {
	perSecond float64
	refusals  [numLimits]overLimit // the answers to a message over each limit
}

// overLimit is the answer to a message over one of the limits: its error,
// and its frame, built once for the messages that carry no cid.
type overLimit struct {
	limit int // limitMessages or limitBytes (metrics.go)
	err   fieldError
	frame frame
}

// newRateLimit returns the limit for perSecond messages a second.
func newRateLimit(perSecond float64) *rateLimit {
	l := &rateLimit{perSecond: perSecond}
	for i, msg := range [numLimits]string{
		limitMessages: fmt.Sprintf("Too many messages: at most %g per second", perSecond),
		limitBytes:    fmt.Sprintf("Too much data: at most %d bytes per second", bytesPerSecond),
	} {
		err := fieldError{Type: errRateLimited, Loc: []string{}, Msg: msg}
		l.refusals[i] = overLimit{limit: i, err: err, frame: errorFrame("", err)}
	}
	return l
}

// meter is one connection's three buckets. The read loop uses it, and so
// does dispatch, which the read loop runs on a spare stack and waits for
// (onSpareStack): one at a time, so it needs no lock. A nil meter allows
// everything.
type meter struct {
	limit                   *rateLimit
	messages, bytes, frames tokenBucket
}

// newMeter returns full buckets for one connection, or nil when there is
// no limit.
func (l *rateLimit) newMeter() *meter {
	if l.perSecond <= 0 {
		return nil
	}
	now := time.Now()
	return &meter{
		limit:    l,
		messages: newBucket(l.perSecond, now),
		bytes:    newBucket(bytesPerSecond, now),
		frames:   newBucket(framesPerMessage*l.perSecond, now),
	}
}

// frame takes a token for one frame of any kind; false means flooding.
func (m *meter) frame() bool { return m == nil || m.frames.take(1) }

// message takes tokens for one text message of size bytes. It returns the
// answer when the message is over either limit, or nil.
func (m *meter) message(size int) *overLimit {
	switch {
	case m == nil:
		return nil
	case !m.messages.take(1):
		return &m.limit.refusals[limitMessages]
	case !m.bytes.take(float64(size)):
		return &m.limit.refusals[limitBytes]
	}
	return nil
}

// answer is the frame that refuses data: with data's cid when it has one.
// The cid is found by a scan (peekCid), not a decode, which is what the
// refusal spares the server.
func (r *overLimit) answer(data []byte) frame {
	if cid := peekCid(data); cid != "" {
		return errorFrame(cid, r.err)
	}
	return r.frame
}

// tokenBucket allows what it has tokens for; tokens come back at rate a
// second, up to burst, twice the rate.
type tokenBucket struct {
	rate, tokens float64
	last         time.Time
}

// newBucket returns a full bucket.
func newBucket(rate float64, now time.Time) tokenBucket {
	return tokenBucket{rate: rate, tokens: 2 * rate, last: now}
}

// take takes n tokens if there are that many.
func (b *tokenBucket) take(n float64) bool {
	now := time.Now()
	b.tokens = min(2*b.rate, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	b.last = now
	if b.tokens < n {
		return false
	}
	b.tokens -= n
	return true
}
