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
// here broadcasts. The layer hands frames from other processes to
// hub.fromLayer.
type channelLayer interface {
	// subscribe returns a channel that is closed once frames for room
	// from other processes will reach this one.
	subscribe(room string) <-chan struct{}
	unsubscribe(room string)
	publish(room string, f frame)
	status() layerStatus
	close()
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

func (memoryLayer) subscribe(string) <-chan struct{} { return subscribed }
func (memoryLayer) unsubscribe(string)               {}
func (memoryLayer) publish(string, frame)            {}
func (memoryLayer) status() layerStatus              { return layerStatus{Kind: "memory"} }
func (memoryLayer) close()                           {}
