package main

// This file is the server API, for an application's backend: HTTP and
// JSON, on only when $ROOMCHAT_API_KEY is set, every request bearing the
// key. It publishes into a room down the road a member's message takes
// (the broker: an id, the history, every process), reads a room's history,
// and counts rooms' members in every process. docs/protocol.md has every
// route, status and error.

import (
	"cmp"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"
)

// The API's settings and limits.
const (
	// apiKeyEnv holds the key; there is no flag, whose value every user
	// of the machine could read in the process list.
	apiKeyEnv = "ROOMCHAT_API_KEY"

	// minAPIKeyBytes is the shortest key accepted: 128 bits of a random
	// key, as `openssl rand -base64 16` gives.
	minAPIKeyBytes = 16

	// apiRequestsPerSecond bounds the API's requests, all callers together,
	// with bursts of twice that: a backend that posts notifications, not a
	// crowd. Each costs about what a member's message does.
	apiRequestsPerSecond = 100

	// apiPlaceWait is how long a publish waits for its message's place
	// (with Redis, a round trip) before it answers 202: the message is on
	// its way, its id unknown yet, and promised: the backlog keeps it past
	// its bounds rather than refuse it (post.promise). It outlasts the time
	// a Redis that stops answering takes to be found (redis.go), by a
	// second, so that a full backlog is mostly answered 503, not held over.
	apiPlaceWait = redisPingEvery + redisReplyTimeout + time.Second
)

// apiKeyFrom reads the API key from the environment: nil when it is not
// set; an error, which says why but never the key, when it is too short.
func apiKeyFrom(lookup func(string) (string, bool)) ([]byte, error) {
	key, ok := lookup(apiKeyEnv)
	switch {
	case !ok:
		return nil, nil
	case len(key) < minAPIKeyBytes:
		return nil, fmt.Errorf("$%s is set but shorter than %d bytes; make one with: openssl rand -base64 24", apiKeyEnv, minAPIKeyBytes)
	}
	return []byte(key), nil
}

// api answers the /api/ routes for one hub.
type api struct {
	h   *hub
	key [sha256.Size]byte // the key's hash: comparing hashes leaks not even the key's length

	proxies  []netip.Prefix // for clientAddr: wrong keys are counted per client (apikeyguard.go)
	ipv6Bits int
	guard    keyGuard

	// placeWait is how long a publish waits before it answers 202
	// (apiPlaceWait); a field, so that a test can choose which comes first.
	placeWait time.Duration

	mu   sync.Mutex
	rate tokenBucket
}

// apiHandler is the API, behind its key and its rate.
func apiHandler(h *hub, opts options) http.Handler {
	a := &api{h: h, key: sha256.Sum256(opts.apiKey), rate: newBucket(apiRequestsPerSecond, time.Now()),
		proxies: opts.proxies, ipv6Bits: opts.ipv6Prefix, guard: keyGuard{failures: map[netip.Addr]*keyFailures{}},
		placeWait: cmp.Or(opts.apiPlaceWait, apiPlaceWait)}
	mux := http.NewServeMux()
	mux.HandleFunc("/api/rooms/{room}/messages", a.messages)
	mux.HandleFunc("/api/rooms/{room}", a.room)
	mux.HandleFunc("/api/rooms", a.rooms)
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		apiError(w, http.StatusNotFound, "no such route: see docs/protocol.md, The HTTP API")
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !a.admitKey(w, r) { // apikeyguard.go
			return
		}
		a.mu.Lock()
		allowed := a.rate.take(1)
		a.mu.Unlock()
		if !allowed {
			w.Header().Set("Retry-After", "1")
			apiError(w, http.StatusTooManyRequests, fmt.Sprintf("too many requests: at most %d a second", apiRequestsPerSecond))
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// authorized compares the request's bearer key with the API's in constant
// time.
func (a *api) authorized(r *http.Request) bool {
	scheme, key, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	given := sha256.Sum256([]byte(key))
	return strings.EqualFold(scheme, "Bearer") && subtle.ConstantTimeCompare(given[:], a.key[:]) == 1
}

// messages is /api/rooms/{room}/messages: POST publishes, GET reads the
// history.
func (a *api) messages(w http.ResponseWriter, r *http.Request) {
	room, ok := roomOf(w, r)
	switch {
	case !ok:
	case r.Method == http.MethodPost:
		a.publish(w, r, room)
	case r.Method == http.MethodGet || r.Method == http.MethodHead:
		a.history(w, r, room)
	default:
		methodNotAllowed(w, "GET, HEAD, POST")
	}
}

// publish posts a chat message into room, as a member's: validated by the
// same rules, placed by the broker, delivered to every process. It answers
// the message's id once it has its place.
func (a *api) publish(w http.ResponseWriter, r *http.Request, room string) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxMessageBytes))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		apiError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the body is over %d bytes", maxMessageBytes))
		return
	case err != nil:
		apiError(w, http.StatusBadRequest, "the body could not be read")
		return
	}
	p, errs := decodeAPIMessage(body)
	if errs != nil {
		writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"detail": errs})
		return
	}
	if st := a.h.broker.status(); st.redisStatus != nil && !st.Connected {
		w.Header().Set("Retry-After", fmt.Sprint(retryAfterSeconds()))
		apiError(w, http.StatusServiceUnavailable, "Redis is unreachable: try again later (with the same cid, a retry is safe)")
		return
	}
	p.ended = make(chan *fieldError, 1)
	a.h.broker.publish(room, p)
	wait := time.NewTimer(a.placeWait)
	defer wait.Stop()
	var refused *fieldError
	select {
	case refused = <-p.ended:
	case <-wait.C:
		if p.promise() { // on its way, in this process's hands: see docs/protocol.md for what that promises
			writeJSON(w, http.StatusAccepted, map[string]any{"queued": true})
			return
		}
		refused = <-p.ended // it ended as the wait did
	}
	if refused != nil && refused.Type == errNotStored { // -data, a full disk: it reached the room (journal.go)
		apiError(w, http.StatusInsufficientStorage, refused.Msg)
		return
	}
	if refused != nil { // it reached no one: a retry is safe
		w.Header().Set("Retry-After", fmt.Sprint(retryAfterSeconds()))
		apiError(w, http.StatusServiceUnavailable, "refused ("+refused.Type+"): it reached no one; try again later (with the same cid, a retry is safe)")
		return
	}
	answer := map[string]any{}
	if p.id != "" {
		answer["id"] = p.id
	}
	writeJSON(w, http.StatusOK, answer)
}

// decodeAPIMessage validates a publish's body, {"message": ..., "name":
// ...} and perhaps "cid", as a new_chat_message's payload and cid are
// (messages.go): the same rules, the same errors, located in the body.
func decodeAPIMessage(body []byte) (*post, []fieldError) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil || top == nil {
		var syntax *json.SyntaxError
		if errors.As(err, &syntax) {
			return nil, inBody(oneError(errJSONInvalid, nil, "Invalid JSON: "+describeSyntaxError(body, syntax)))
		}
		return nil, inBody(oneError(errModelType, nil, notADict("ChatMessagePayload")))
	}
	payload, errs := decodeChat(body, sender{})
	var cid string
	if raw, ok := top["cid"]; ok {
		errs = append(errs, decodeCid(raw, &cid)...)
	}
	if errs != nil {
		return nil, inBody(errs)
	}
	p := newPost(payload.(chatPayload), 0)
	if cid != "" {
		p.cid, p.key = cid, cidKey(apiCids, "", cid)
	}
	return p, nil
}

// inBody locates errors in the request body, as an HTTP API does (FastAPI's
// ["body","name"]), not in a WebSocket frame (["new_chat_message",
// "payload","name"]): the body as a whole is ["body"].
func inBody(errs []fieldError) []fieldError {
	for i, e := range errs {
		loc := e.Loc
		if len(loc) >= 2 && loc[0] == "new_chat_message" && loc[1] == "payload" {
			loc = loc[2:]
		}
		errs[i].Loc = append([]string{"body"}, loc...)
	}
	return errs
}

// history answers room's history, all of it or what followed ?since=ID,
// as a resume would have it: {"epoch", "messages", and "gap" when the
// messages are not all that followed the id}.
func (a *api) history(w http.ResponseWriter, r *http.Request, room string) {
	h, err := a.h.broker.history(room)
	if err != nil {
		w.Header().Set("Retry-After", fmt.Sprint(retryAfterSeconds()))
		apiError(w, http.StatusServiceUnavailable, "Redis is unreachable: the history is there, out of reach")
		return
	}
	entries, gap, _ := h.after(r.URL.Query().Get("since"))
	messages := make([]json.RawMessage, len(entries))
	for i, e := range entries {
		messages[i] = e.json
	}
	answer := map[string]any{"epoch": h.epoch, "messages": messages}
	if gap != "" {
		answer["gap"] = gap
	}
	writeJSON(w, http.StatusOK, answer)
}

// roomCount is one room's members in the API's answers.
type roomCount struct {
	Room    string `json:"room"`
	Members int    `json:"members"`
}

// rooms is /api/rooms: every room with members, in every process, and
// whether the counts are of every process (false while Redis is away).
func (a *api) rooms(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		methodNotAllowed(w, "GET, HEAD")
		return
	}
	members, complete, err := a.h.broker.presence("")
	if err != nil {
		apiError(w, http.StatusServiceUnavailable, "the counts could not be read")
		return
	}
	list := []roomCount{}
	for _, name := range slices.Sorted(maps.Keys(members)) {
		list = append(list, roomCount{name, members[name]})
	}
	writeJSON(w, http.StatusOK, map[string]any{"rooms": list, "complete": complete})
}

// room is /api/rooms/{room}: one room's members, in every process, and
// their names (presence.go).
func (a *api) room(w http.ResponseWriter, r *http.Request) {
	room, ok := roomOf(w, r)
	switch {
	case !ok:
		return
	case r.Method != http.MethodGet && r.Method != http.MethodHead:
		methodNotAllowed(w, "GET, HEAD")
		return
	}
	members, complete, err := a.h.broker.presence(room)
	names, namesComplete, err2 := a.h.broker.whoIsIn(room)
	if err != nil || err2 != nil {
		apiError(w, http.StatusServiceUnavailable, "the count could not be read")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"room": room, "members": members[room], "names": names,
		"complete": complete && namesComplete})
}

// roomOf is the request's room, or, answered 400, false.
func roomOf(w http.ResponseWriter, r *http.Request) (string, bool) {
	room := r.PathValue("room")
	if !roomRE.MatchString(room) {
		apiError(w, http.StatusBadRequest, "invalid room name: use 1 to 99 characters of A-Z a-z 0-9 . _ -")
		return "", false
	}
	return room, true
}

// methodNotAllowed answers 405, saying which methods the route takes.
func methodNotAllowed(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	apiError(w, http.StatusMethodNotAllowed, "this route takes "+allow)
}

// apiError answers code with {"detail": why}, as FastAPI does.
func apiError(w http.ResponseWriter, code int, why string) {
	writeJSON(w, code, map[string]string{"detail": why})
}

// What the memory broker answers the HTTP API with (redispresence.go has
// the Redis broker's answers).

// present needs to tell no one: in one process, presence counts members
// where they are.
func (b *memoryBroker) present(string, int) {}

// presence counts the members of the rooms that have some.
func (b *memoryBroker) presence(room string) (map[string]int, bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	members := map[string]int{}
	for name, s := range b.streams {
		if room == "" || room == name {
			s.mu.Lock()
			if s.room != nil {
				members[name] = s.room.size()
			}
			s.mu.Unlock()
		}
	}
	return members, true, nil
}

// history is a copy of room's history. A room never spoken in has none, as
// with Redis (no epoch), and asking starts no stream: the API may ask for
// any name.
func (b *memoryBroker) history(room string) (history, error) {
	b.mu.Lock()
	s := b.streams[room]
	b.mu.Unlock()
	if s == nil {
		return history{keep: b.keep, total: new(historyTotal), next: 1}, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gone { // expired meanwhile: nothing kept
		return history{keep: b.keep, total: new(historyTotal), next: 1}, nil
	}
	return s.history.snapshot(), nil
}

// How the API hears what became of its post (post.ended, post.fate).

// A post's fate, for a sender that waits: the first word wins.
const (
	waiting  int32 = iota
	ended          // its sender was told how it ended: placed, or refused
	promised       // its sender stopped waiting first, told it will reach the stream (the API's 202)
)

// end tells p's sender, if it waits (the HTTP API), how p ended: nil once
// it has its place, or why it was refused. Only the first word counts. It
// reports false when p may not be refused: its sender stopped waiting
// first and was promised p, so a broker keeps p, past its bounds if need
// be (TestAPIPromisedPostIsKept).
func (p *post) end(refused *fieldError) bool {
	if p.ended == nil {
		return true
	}
	if p.fate.CompareAndSwap(waiting, ended) {
		p.ended <- refused // the one send: ended holds one
		return true
	}
	return p.fate.Load() != promised
}

// promise is the API's 202: its caller stops waiting for p, and from now
// on p must reach the stream. It reports false when p ended first; how is
// then in ended.
func (p *post) promise() bool { return p.fate.CompareAndSwap(waiting, promised) }
