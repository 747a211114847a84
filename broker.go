package main

// This file is the road every chat message takes: the seam every broker
// fills (memorybroker.go for one process, redis.go for several), the post
// and the delivery. A message said in a room goes to the broker (publish); the broker gives it
// its place in the room's stream (an id, when history is kept), keeps it,
// resolves what each member hears of it (a delivery: its sender, members
// that asked for ids, the rest) and hands that to room.deliver in every
// process with members in the room, this one included, in the stream's one
// order. The hub delivers what the broker hands back, and nothing else, so
// it never asks which broker it has. To change what members hear, change
// the delivery here, room.deliver (hub.go), or the frames (history.go).

import (
	"sync/atomic"
	"time"
)

// A broker carries chat messages between their senders and the rooms that
// hear them. The hub calls subscribe when a room gets its first client here
// and unsubscribe when it loses its last, and present at every change, all
// with hub.mu held, so none may wait for the network.
type broker interface {
	// subscribe attaches r to its room's stream here. The channel it
	// returns is closed once the stream's messages reach r (with Redis, once
	// Redis has confirmed and the stream is loaded).
	subscribe(r *room) <-chan struct{}
	unsubscribe(r *room)
	// publish sends p down the road. It never waits for the network; p comes
	// back through room.deliver, before publish returns or later.
	publish(room string, p *post)
	// join makes c a member of its room with the replay it asked for,
	// holding the room's stream still meanwhile, so that every message is
	// either in the replay or delivered after it.
	join(c *client)
	// present says how many clients (joining ones too) room has here now,
	// presence how many each room has in every process ("" for all), and
	// whether that is all. They serve the HTTP API (api.go).
	present(room string, members int)
	presence(room string) (members map[string]int, complete bool, err error)
	// member counts c in or out of its room's presence (the hub calls it
	// with hub.mu held, at enter and leave), typing forwards c's typing,
	// and whoIsIn is a room's names: presence.go.
	member(c *client, in bool)
	typing(c *client)
	whoIsIn(room string) (names []string, complete bool, err error)
	// history is a copy of room's history, for the HTTP API.
	history(room string) (history, error)
	// status is the broker's part of /healthz (health.go:brokerStatus).
	status() brokerStatus
	close()
}

// subscribeWait is how long a join waits for its broker to bring a room
// new here (subscribe's channel): with Redis, for Redis to confirm the
// subscription and load the stream, so that the member hears the other
// processes by the time it reads the 101; in memory a room is ready at
// once. A broker that does not answer in that time does not hold the
// handshake any longer.
const subscribeWait = 1500 * time.Millisecond

// closeOnce closes ch unless it is closed already. It is not atomic: each
// caller holds the lock that guards ch, or is the one goroutine that reads
// a Redis session's replies.
func closeOnce(ch chan struct{}) {
	select {
	case <-ch:
	default:
		close(ch)
	}
}

// A post is one chat message on its road: what was said, by whom, and, once
// the broker has placed it, where in its room's stream. It is encoded once,
// however many members get it. One goroutine holds it at a time: its
// sender's until publish, then the broker's, which hands it on under a lock
// (a stream's, or its own; with -data, its journal's) and never shares it;
// its sender reads its id only once ended says it may.
type post struct {
	msg     chatPayload
	from    uint64  // the member here that said it; 0 for none here: the API's, or said in another process
	sender  *client // from itself, told once its message is on disk (-data, journal.go); nil for none here
	wantsID bool    // from asked for ids: it hears its said even without a cid
	cid     string  // its sender's own id for it; "" for none
	key     string  // its sender's space of cids and cid (cidKey): a second message with the same key is a copy; "" without a cid
	id      string  // its place in the room's stream, "EPOCH-SEQ"; "" when no history is kept
	frame   frame   // msg as a new_chat_message frame
	withID  frame   // the same with its id, for members that asked for ids; made once, by withIDFrame

	// ended, when its sender waits to hear how it ended (the HTTP API),
	// gets nil once it has its place, or why it was refused (end). fate
	// says whether that word was given, or the sender stopped waiting and
	// was promised the post instead (promise).
	ended chan *fieldError
	fate  atomic.Int32
}

// newPost encodes what client from said, ready for the road.
func newPost(msg chatPayload, from uint64) *post {
	return &post{msg: msg, from: from, frame: encodeFrame("new_chat_message", msg)}
}

// postFrom is what c said, with the cid it gave: under its token's name,
// when it has one (a payload's name is replaced), and known by who said it
// and cid, so that a copy sent again is not delivered twice.
func postFrom(c *client, msg chatPayload, cid string) *post {
	space, who := memberCids, msg.Name
	if c.token != nil {
		msg.Name, space, who = c.token.Name, subjectCids, c.token.Subject
		if c.token.Subject == "" {
			space, who = tokenNameCids, c.token.Name
		}
	}
	p := newPost(msg, c.id)
	p.wantsID, p.sender = c.history != nil, c
	if cid != "" {
		p.cid, p.key = cid, cidKey(space, who, cid)
	}
	return p
}

// A delivery is a post resolved for the members of one room here: what
// each of them hears. The broker resolves it; room.deliver hands it out as
// it is. A frame without wire bytes is nothing.
type delivery struct {
	from     uint64             // the member here that said it: it hears toSender, never the message; 0 for none
	toSender frame              // its said, or why it did not reach everyone
	withID   func() frame       // for the members that asked for ids, made at the first that needs it; nil: nothing
	plain    frame              // for the others
	skip     func(*client) bool // members that hold it already (they resumed past it), and hear nothing; nil: none
}

// toAll is p's delivery once it has its place: its sender hears its said,
// every other member the message.
func (p *post) toAll() delivery {
	return delivery{from: p.from, toSender: p.said(), withID: p.withIDFrame, plain: p.frame}
}

// toSender is a delivery of f to p's sender alone: the others here have p
// already (a copy), or will not.
func (p *post) toSender(f frame) delivery { return delivery{from: p.from, toSender: f} }

// said is what p's sender here hears once p has its place: its id and cid,
// if it gave a cid or asked for ids; otherwise nothing.
func (p *post) said() frame {
	if p.from == 0 || p.cid == "" && (!p.wantsID || p.id == "") {
		return frame{}
	}
	return saidFrame(p.id, p.cid)
}

// withIDFrame is p's frame for members that asked for ids: with its id
// when it has one, and its sender's cid, so that a client given the
// message first without an id can tell it when it comes again with one.
func (p *post) withIDFrame() frame {
	if p.id == "" && p.cid == "" {
		return p.frame
	}
	if p.withID.wire == nil {
		p.withID = framed(outFrame{Action: "new_chat_message", Payload: p.msg, ID: p.id, Cid: p.cid})
	}
	return p.withID
}
