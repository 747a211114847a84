package main

// This file is the seam between the hub and the other processes serving
// the same rooms: Django Channels' channel layer. The hub keeps each room's
// local members itself (hub.go); a channel layer carries what they say to
// the members the other processes keep, and brings back what those say.
// Without -redis there are no other processes, and the layer does nothing:
// it is Channels' InMemoryChannelLayer. With -redis it is redis.go's.

// A channelLayer connects this process's rooms with the same rooms in other
// processes. The hub calls subscribe when a room gets its first member
// here and unsubscribe when it loses its last, both with the hub's lock
// held, so they must not wait; it calls publish for every frame a member
// here broadcasts, and keep for every chat message when it shares the
// rooms' histories (redishistory.go). The layer hands what it brings to
// the hub through layerHub.
type channelLayer interface {
	// subscribe returns a channel that is closed once frames for room
	// from other processes will reach this one.
	subscribe(room string) <-chan struct{}
	unsubscribe(room string)
	publish(room string, f frame)
	// keep hands a chat message to the shared history, and reports false
	// when the layer has none to hand it to (the caller delivers it).
	keep(room string, from uint64, p chatPayload) bool
	status() layerStatus
	close()
}

// layerHub is what a channel layer hands to the hub (hub.go).
type layerHub interface {
	fromLayer(room string, msg message)                           // a frame another process published
	fromStream(room string, e streamEntry, own bool, from uint64) // a message of a room's shared history
	loadStream(room string, entries []streamEntry)                // a room's shared history so far
	historyBroken()                                               // the shared history is away
}

// layerStatus is the layer's part of /healthz: which layer runs and, for
// Redis, its connection and totals, whose fields JSON lifts into this one.
type layerStatus struct {
	Kind         string `json:"kind"`
	*redisStatus        // nil for the memory layer
}

// memoryLayer is the layer of a single process: every room is here.
type memoryLayer struct{}

// subscribed is closed: in one process, a room is ready at once.
var subscribed = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func (memoryLayer) subscribe(string) <-chan struct{}      { return subscribed }
func (memoryLayer) unsubscribe(string)                    {}
func (memoryLayer) publish(string, frame)                 {}
func (memoryLayer) keep(string, uint64, chatPayload) bool { return false }
func (memoryLayer) status() layerStatus                   { return layerStatus{Kind: "memory"} }
func (memoryLayer) close()                                {}
