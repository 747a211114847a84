// The chat page: join a room, then talk over one WebSocket.
//
// Everything the page sends or receives is one JSON object per frame, as
// docs/protocol.md says. Open the Log panel to watch them go by.
//
// Every chat message the page sends carries a client id (cid) of its own.
// The message is shown at once as "Sending…", and as "Sent" only when the
// server's `said` with that cid says it reached the room; an `error` with it
// marks the message "Not delivered", with the reason. Messages still
// unconfirmed when the socket drops are sent again, with the same cid, after
// the reconnect's replay: the server delivers a copy once, as long as its
// history keeps the first.

import { presence } from "./presence.js"; // who is here, and typing

// Limits of docs/protocol.md. browser_test.go checks that they equal the server's.
const ROOM_RULE = /^[A-Za-z0-9._-]{1,99}$/;
const MAX_MESSAGE_CHARS = 4000;
const MAX_NAME_CHARS = 100;

// The server pings us every 20 s and the browser answers by itself, which
// keeps the socket open. A page cannot see those pings, so it sends its own
// `ping` to learn that the server still answers.
const PING_EVERY_MS = 25_000;

// Reconnect after a drop: wait 1 s, then 2, 4, ... up to 30 s.
const RETRY_FIRST_MS = 1_000;
const RETRY_MAX_MS = 30_000;

// Unconfirmed messages kept for sending again: past this, the composer
// refuses new ones until the server has confirmed some, so that nothing
// typed is ever dropped unseen.
const OUTBOX_LIMIT = 100;

// Chat messages sent in each second at most, resends included: the
// server's default rate is 20 a second with bursts of 40, so a page that
// resends its whole outbox after a reconnect is not refused for it.
const SEND_PER_SECOND = 20;

// (name, cid) pairs remembered of messages shown without an id, so that the
// same message, replayed later with its id, is not shown twice.
const SEEN_LIMIT = 1000;

const LOG_LIMIT = 500; // frames kept in the log panel

// A connection token comes in the link's fragment (#token=…), which the
// browser never sends to a server; the page keeps it in this tab's
// sessionStorage under this key, so that a reload still has it.
const TOKEN_KEY = "roomchat.token";
const TOKEN_PROTOCOL = "roomchat.token"; // the subprotocol that carries it
const TOKEN_LEEWAY_MS = 30_000; // the server forgives clocks this much (token.go)
const CLOSE_TOKEN_EXPIRED = 4401; // the server's close when a token runs out (docs/protocol.md)

const $ = (id) => document.getElementById(id);

// One chat session at a time. `socket` is null while disconnected.
const state = {
  name: "",
  room: "",
  socket: null,
  retryMs: RETRY_FIRST_MS,
  retryTimer: 0,
  pingTimer: 0,
  leaving: false,
  // The id of the last message shown ("epoch-seq", docs/protocol.md):
  // after a drop, the page asks for what followed it. "" before the first.
  lastId: "",
  // The link's token and what it says ("" and null without one), and
  // whether a socket with it has opened in this tab: only then is a failed
  // connection taken for the network's fault rather than the token's.
  token: "",
  claims: null,
  tokenWorked: false,
  // Whether any socket has opened in this tab: a server that let the page
  // in once does not ask for a token it did not have.
  everOpened: false,
  // Our messages not yet confirmed, oldest first: {cid, text, item,
  // socket (the one it was last sent on), sends, status}.
  outbox: [],
  // Our latest messages by cid, SEEN_LIMIT at most: those in the outbox,
  // and settled ones, which a late error may still change.
  mine: new Map(),
  // The current socket's replay is in: the server answered the ping sent
  // on opening (syncCid), which it does after the history frame, if any
  // (sawHistory). Until then nothing is sent from the outbox.
  synced: false,
  syncCid: "",
  sawHistory: false,
  // Chat messages sent in the current second, and the timer that ends it.
  sentThisSecond: 0,
  secondTimer: 0,
  // "name\ncid" of messages shown without an id: the page's own, and any
  // other that came with a cid but no id.
  seen: new Map(),
};

// The parts of a message id, to tell newer from older in one stream.
const idParts = (id) => {
  const [epoch, seq] = id.split("-");
  return { epoch, seq: Number(seq) };
};

// Characters as the server counts them: code points, not UTF-16 units, so
// an emoji counts as one.
const charCount = (s) => Array.from(s).length;

// newCid returns 128 random bits in hex: 32 printable ASCII characters, as
// the protocol asks (1 to 64). Not crypto.randomUUID, which a page served
// over plain http from anywhere but localhost does not have.
const newCid = () => Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");

// --- joining and leaving -------------------------------------------------

function init() {
  const room = new URLSearchParams(location.search).get("room");
  if (room) $("room").value = room;
  useToken(takeToken());
  if (!state.token) $("name").value = localStorage.getItem("roomchat.name") || "";

  $("join").addEventListener("submit", (e) => {
    e.preventDefault();
    join();
  });
  $("composer").addEventListener("submit", (e) => {
    e.preventDefault();
    sendChat();
  });
  $("leave").addEventListener("click", leave);
  $("log-toggle").addEventListener("click", toggleLog);
  $("log-clear").addEventListener("click", () => $("log-entries").replaceChildren());

  // A reload of this tab rejoins its room. A link to a room only fills in
  // the form: opening a link must not put a visitor in a room unasked.
  if (room && $("name").value && sessionStorage.getItem("roomchat.joined") === room) join();
  else ($("name").value ? $("room") : $("name")).focus();
}

// takeToken returns the token this tab joins with: the one in the link's
// fragment, which it then removes from the address bar (so that the link
// is not copied, bookmarked or shared with it) and keeps in sessionStorage
// (so that a reload, which no longer has the fragment, still has it), or
// the one kept by an earlier load of this tab. sessionStorage belongs to
// this tab alone and goes when it closes; it is never sent to the server.
function takeToken() {
  const fromLink = new URLSearchParams(location.hash.slice(1)).get("token");
  if (location.hash) history.replaceState(null, "", location.pathname + location.search);
  if (fromLink) sessionStorage.setItem(TOKEN_KEY, fromLink);
  return fromLink || sessionStorage.getItem(TOKEN_KEY) || "";
}

// useToken joins with token from now on, under the name it holds, in place
// of the name field. The page reads the token's claims without checking its
// signature: it cannot, and need not, since the server checks it and
// replaces the name in every message with the token's.
function useToken(token) {
  if (!token) return;
  const claims = readClaims(token);
  const name = claims && (typeof claims.name === "string" ? claims.name : claims.sub);
  if (typeof name !== "string" || !name) {
    sessionStorage.removeItem(TOKEN_KEY);
    $("join-error").textContent = "This link's token cannot be read. Ask for a new link, or enter a name.";
    return;
  }
  state.token = token;
  state.claims = claims;
  const field = $("name");
  field.value = name;
  field.readOnly = true;
  field.setAttribute("aria-describedby", "name-note");
  $("name-label").textContent = "Name (from your link)";
  $("name-note").hidden = false;
  // A link for one room fills it in, when the address names none.
  const rooms = Array.isArray(claims.rooms) ? claims.rooms : [];
  if (!new URLSearchParams(location.search).get("room") && rooms.length === 1 && rooms[0] !== "*") {
    $("room").value = rooms[0];
  }
}

// readClaims decodes a JSON Web Token's payload (its second segment,
// base64url-encoded UTF-8 JSON), or returns null.
function readClaims(token) {
  try {
    const segment = token.split(".")[1].replaceAll("-", "+").replaceAll("_", "/");
    const bytes = Uint8Array.from(atob(segment), (c) => c.charCodeAt(0));
    const claims = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
    return claims && typeof claims === "object" && !Array.isArray(claims) ? claims : null;
  } catch {
    return null;
  }
}

function join() {
  const name = $("name").value.trim();
  const room = $("room").value.trim();
  const problem =
    !name ? "Please enter a name." :
    charCount(name) > MAX_NAME_CHARS ? `Names are at most ${MAX_NAME_CHARS} characters.` :
    !ROOM_RULE.test(room) ? "Room names are 1 to 99 letters, digits, dots, underscores or hyphens (no spaces)." :
    "";
  $("join-error").textContent = problem;
  if (problem) return;

  state.name = state.token ? $("name").value : name; // the server uses the token's name as it is
  state.room = room;
  state.leaving = false;
  state.lastId = "";
  state.retryMs = RETRY_FIRST_MS;
  state.tokenWorked = false;
  if (!state.token) localStorage.setItem("roomchat.name", name);
  sessionStorage.setItem("roomchat.joined", room);
  // The room goes in the URL, so the link can be shared and a reload rejoins.
  history.replaceState(null, "", `?room=${encodeURIComponent(room)}`);

  $("join").hidden = true;
  $("chat").hidden = false;
  $("room-bar").hidden = false;
  $("room-title").textContent = room;
  document.title = `${room} · roomchat`;
  connect();
}

function leave() {
  state.leaving = true;
  clearTimeout(state.retryTimer);
  clearTimeout(state.secondTimer);
  state.secondTimer = 0;
  state.sentThisSecond = 0;
  if (state.socket) state.socket.close(1000, "left the room");
  state.socket = null;
  // What was not confirmed is dropped with the conversation it was shown in.
  state.outbox = [];
  state.mine.clear();
  state.seen.clear();
  history.replaceState(null, "", location.pathname);
  sessionStorage.removeItem("roomchat.joined");
  $("messages").replaceChildren();
  presence.stop();
  $("chat-error").textContent = "";
  $("chat").hidden = true;
  $("room-bar").hidden = true;
  $("join").hidden = false;
  document.title = "roomchat";
  $("room").focus();
}

// --- the connection ------------------------------------------------------

function connect() {
  // Same host and port as the page; wss: when the page came over https:, so
  // this works behind a TLS proxy too.
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  // Ask for the room's recent history on joining, and after a drop for what
  // followed the last message shown: nothing is missed, nothing shown twice.
  const ask = state.lastId ? `since=${encodeURIComponent(state.lastId)}` : "history";
  const url = `${scheme}//${location.host}/ws/chat/${encodeURIComponent(state.room)}/?${ask}${presence.query(state.name)}`;
  setBadge("Connecting", "connecting");
  // A token goes as the second of two subprotocols: a browser cannot set
  // an Authorization header on a WebSocket, and a URL would be logged.
  const socket = state.token ? new WebSocket(url, [TOKEN_PROTOCOL, state.token]) : new WebSocket(url);
  state.socket = socket;
  state.synced = false;
  state.sawHistory = false;
  let opened = false;

  socket.onopen = () => {
    if (socket !== state.socket) return;
    opened = true;
    state.everOpened = true;
    if (state.token) state.tokenWorked = true;
    state.retryMs = RETRY_FIRST_MS;
    setBadge("Connected", "connected");
    setComposerEnabled(true);
    presence.start(sendFrame, state.name);
    $("chat-error").textContent = "";
    // The answer to this ping comes after the replay the server queued as
    // we joined: from then on, the outbox may be sent (synced).
    state.syncCid = newCid();
    sendFrame({ action: "ping", cid: state.syncCid });
    state.pingTimer = setInterval(() => sendFrame({ action: "ping" }), PING_EVERY_MS);
    $("message").focus();
  };

  socket.onmessage = (event) => {
    if (socket !== state.socket) return;
    logFrame("in", event.data);
    let frame;
    try {
      frame = JSON.parse(event.data);
    } catch {
      return; // the server only sends JSON; anything else is not ours to show
    }
    if (frame && typeof frame === "object") receive(frame);
  };

  socket.onclose = async (event) => {
    clearInterval(state.pingTimer);
    if (socket !== state.socket) return; // an old socket, already replaced
    state.socket = null;
    state.synced = false;
    setComposerEnabled(false);
    logNote(`closed: code ${event.code}${event.reason ? ", " + event.reason : ""}`);
    if (state.leaving) return;
    if (event.code === CLOSE_TOKEN_EXPIRED) {
      sessionStorage.removeItem(TOKEN_KEY); // it will not let this tab in again
      stopRetrying("Session ended", `Your session ended: this link's token expired${expiry()}. Ask for a new link, and open it to chat again.`);
      return;
    }
    const refusal = opened ? "" : state.token ? await tokenRefusal() : await tokenNeeded();
    if (state.leaving || state.socket) return; // left, or rejoined, meanwhile
    if (refusal) {
      stopRetrying(state.token ? "Refused" : "Token needed", refusal);
      return;
    }
    // Wait longer after each failure, with some jitter so that many tabs
    // dropped at once do not all come back in the same instant.
    const wait = state.retryMs * (0.75 + Math.random() / 2);
    state.retryMs = Math.min(state.retryMs * 2, RETRY_MAX_MS);
    setBadge(`Disconnected: reconnecting in ${Math.round(wait / 1000)} s`, "disconnected");
    $("chat-error").textContent = closeExplanation(event.code);
    state.retryTimer = setTimeout(connect, wait);
  };
}

// stopRetrying shows why the page will not reconnect, as docs/protocol.md's
// retry table says: a refusal would come again.
function stopRetrying(badge, why) {
  setBadge(badge, "disconnected");
  $("chat-error").textContent = why;
  logNote("not reconnecting: " + why);
}

// expiry says when the token expires, " at 14:05", or "" if it does not say.
function expiry() {
  const exp = state.claims && typeof state.claims.exp === "number" ? state.claims.exp * 1000 : NaN;
  return Number.isNaN(exp) ? "" : ` at ${new Date(exp).toLocaleTimeString()}`;
}

// serverAnswers reports whether the server answers a plain request: a 5xx
// is a proxy's word that roomchat behind it is down, and no answer at all
// is the network's fault.
async function serverAnswers() {
  try {
    return (await fetch("/healthz", { cache: "no-store" })).status < 500;
  } catch {
    return false;
  }
}

// tokenNeeded says why a socket without a token never opened, or returns ""
// when the cause may be the network. A browser is not told the handshake's
// status, but a server that answers a plain request and has never let this
// tab in refused it: on a server with tokens, that is its 401 (a room name
// the page checks, and the page's own origin, are not refused).
async function tokenNeeded() {
  if (state.everOpened || !(await serverAnswers())) return "";
  return "This server lets in only people with a token, and this page has none. " +
    "Ask whoever runs it for a link to this page that ends in #token=…, and open it " +
    "(they make one with: roomchat token -name YourName -room " + state.room + ").";
}

// tokenRefusal says why a socket with a token never opened, or returns ""
// when the cause may be the network, for the page to try again. A browser
// is not told the handshake's status (401 or 403): the page asks the server
// for a plain page, and if the server answers that, it is up, and it refused
// the token. A token that let this tab in before is only refused once it
// has expired, which the page can tell by its clock.
async function tokenRefusal() {
  const exp = typeof state.claims.exp === "number" ? state.claims.exp * 1000 : Infinity;
  const expired = Date.now() > exp + TOKEN_LEEWAY_MS;
  if (state.tokenWorked) {
    return expired ? `This link's token expired at ${new Date(exp).toLocaleTimeString()}. Ask for a new link.` : "";
  }
  if (!(await serverAnswers())) return ""; // not the token's fault
  const rooms = Array.isArray(state.claims.rooms) ? state.claims.rooms : null;
  const why =
    expired ? `it expired at ${new Date(exp).toLocaleString()}` :
    rooms && !rooms.includes(state.room) && !rooms.includes("*") ?
      `it is for the room${rooms.length > 1 ? "s" : ""} ${rooms.join(", ")}, not ${state.room}` :
    "expired, or not for this room";
  return `The server refused this link's token (${why}). Ask for a new link.`;
}

// What a close code means to a person (the codes are in docs/protocol.md).
function closeExplanation(code) {
  switch (code) {
    case 1001: return "The server went away or the connection was idle too long.";
    case 1008: return "The connection sent too much, or could not keep up with the room, and was dropped.";
    case 1006: return "The connection was lost.";
    default: return `The connection closed (code ${code}).`;
  }
}

function sendFrame(frame) {
  const socket = state.socket;
  if (!socket || socket.readyState !== WebSocket.OPEN) return false;
  const text = JSON.stringify(frame);
  socket.send(text);
  logFrame("out", text);
  return true;
}

// --- sending -------------------------------------------------------------

function sendChat() {
  const input = $("message");
  const message = input.value;
  if (!message.trim()) return;
  const n = charCount(message);
  if (n > MAX_MESSAGE_CHARS) {
    $("chat-error").textContent = `That message is ${n} characters long; the limit is ${MAX_MESSAGE_CHARS}.`;
    return;
  }
  if (state.outbox.length >= OUTBOX_LIMIT) {
    $("chat-error").textContent = `${OUTBOX_LIMIT} messages are still waiting for the server to confirm them; wait until it has before sending more.`;
    return;
  }
  // The server does not echo our own messages back, so we draw them now,
  // as sending; its "said" then tells us the message reached the room.
  const cid = newCid();
  const item = addMessage("You", message, "sending");
  remember(state.name, cid);
  const entry = { cid, text: message, item, socket: null, sends: 0, status: "sending" };
  state.outbox.push(entry);
  keep(entry);
  input.value = "";
  $("chat-error").textContent = "";
  flush();
}

// keep notes one of our messages by its cid, forgetting the oldest settled
// one past SEEN_LIMIT (one still sending is never forgotten).
function keep(entry) {
  state.mine.set(entry.cid, entry);
  if (state.mine.size <= SEEN_LIMIT) return;
  for (const [cid, e] of state.mine) {
    if (e.status !== "sending") {
      state.mine.delete(cid);
      return;
    }
  }
}

// flush sends, in order, every message of the outbox not yet sent on this
// socket, once the socket's replay is in, and no more than SEND_PER_SECOND
// in each second; the rest wait for the next.
function flush() {
  if (!state.synced) return;
  for (const entry of state.outbox) {
    if (entry.socket === state.socket) continue;
    if (state.sentThisSecond >= SEND_PER_SECOND) {
      if (!state.secondTimer) state.secondTimer = setTimeout(newSecond, 1000);
      return;
    }
    const frame = { action: "new_chat_message", payload: { message: entry.text, name: state.name }, cid: entry.cid };
    if (!sendFrame(frame)) return;
    entry.socket = state.socket;
    entry.sends++;
    state.sentThisSecond++;
    if (!state.secondTimer) state.secondTimer = setTimeout(newSecond, 1000);
  }
}

function newSecond() {
  state.secondTimer = 0;
  state.sentThisSecond = 0;
  flush();
}

// synced runs when the server has answered the ping sent on opening: the
// replay, if any, is in. Messages sent on an earlier socket and still
// unconfirmed go again, after it, in order, and move below it on the page,
// where the room will have them. A server without history (no history
// frame came) cannot tell a copy from a new message, so those are marked
// unconfirmed instead of being sent twice.
function synced() {
  state.synced = true;
  const again = state.outbox.filter((e) => e.socket !== null);
  if (!state.sawHistory) {
    for (const entry of again) {
      settle(entry, "unsure", "Not confirmed: the connection dropped before the server confirmed this message, and it keeps no history to tell whether it arrived.");
    }
  } else if (again.length > 0) {
    const list = $("messages");
    const first = again[0].item;
    const pending = new Set(again.map((e) => e.item));
    let after = false;
    for (let el = first.nextElementSibling; el && !after; el = el.nextElementSibling) after = !pending.has(el);
    if (after) for (const entry of again) list.append(entry.item);
    again.at(-1).item.scrollIntoView({ block: "end" });
  }
  flush();
}

// settle takes the message out of the outbox with its final state:
// "sent", "failed" (not delivered), "partial" (only this server's members
// have it) or "unsure" (it may or may not have arrived). All but "sent"
// are also said in the page's alert.
function settle(entry, kind, text) {
  state.outbox = state.outbox.filter((e) => e !== entry);
  entry.status = kind;
  setStatus(entry.item, kind, text);
  if (kind !== "sent") $("chat-error").textContent = `“${clipText(entry.text)}”: ${text}`;
}

// --- receiving -----------------------------------------------------------

// receive handles one frame from the server, by its action.
function receive(frame) {
  if (frame.cid && frame.cid === state.syncCid) {
    state.syncCid = "";
    synced(); // the answer to our opening ping: a pong, or an error if over the rate
    return;
  }
  if (presence.receive(frame)) return;
  switch (frame.action) {
    case "new_chat_message":
      if (frame.payload && show(frame.payload, frame.id, frame.cid)) {
        addMessage(frame.payload.name, frame.payload.message, "");
      }
      break;
    case "said": {
      const id = frame.payload && frame.payload.id;
      if (id) isNew(id);
      const entry = frame.cid && state.mine.get(frame.cid);
      // A said comes once the message has reached the room, every server
      // of it (docs/protocol.md): while they cannot reach each other, it
      // waits, and the message stays "Sending…".
      if (entry && entry.status !== "sent") settle(entry, "sent", "Sent");
      break;
    }
    case "history": {
      state.sawHistory = true;
      const fresh = frame.payload.messages.filter((m) => show(m, m.id, m.cid));
      if (fresh.length === 0) break;
      // On joining, the room's earlier messages are set apart from the
      // live ones; after a drop, what was missed simply comes in order.
      const joining = $("messages").childElementCount === 0;
      if (joining) addNote("Earlier messages");
      for (const m of fresh) addMessage(m.name, m.message, "");
      if (joining) addNote("Now");
      break;
    }
    case "history_gap":
      addNote(frame.payload.reason === "reset"
        ? "The server restarted or forgot this room: messages sent while you were away may be missing."
        : "You were away too long: some of the messages sent meanwhile are missing.");
      break;
    case "pong":
      break; // the keep-alive worked; it shows in the log
    case "error": {
      const entry = frame.cid && state.mine.get(frame.cid);
      if (entry) failed(entry, frame.payload);
      else $("chat-error").textContent = frame.payload.map(explainError).join(" ");
      break;
    }
  }
}

// show reports whether a message from the server (live or replayed) is one
// to draw, and notes what it says of ours. A message with a (name, cid)
// already shown without an id is that one again, now with its id: one of
// ours means it reached the room (its said was lost with a dropped socket).
function show(m, id, cid) {
  const key = cid ? `${m.name}\n${cid}` : "";
  if (key && state.seen.has(key)) {
    if (id) isNew(id); // it counts as shown, for resuming
    const entry = m.name === state.name && state.mine.get(cid);
    if (entry && entry.status !== "sent") settle(entry, "sent", "Sent");
    return false;
  }
  if (!isNew(id)) return false;
  if (key && !id) remember(m.name, cid);
  return true;
}

// failed marks a message the server refused: "Not delivered", with its
// reason, or, for not_relayed, delivered on this server only (which may
// follow a said without an id). A message sent more than once may have
// arrived before the drop, and is said so.
function failed(entry, errors) {
  const list = Array.isArray(errors) ? errors : [];
  if (list.some((e) => e.type === "not_relayed")) {
    settle(entry, "partial", "Delivered only to people on this server: the servers cannot reach each other.");
    return;
  }
  if (entry.status === "sent") return; // a said came first: it is in the room
  const reason = list.map((e) => e.msg).join("; ") || "the server refused it";
  settle(entry, "failed", entry.sends > 1
    ? `Not confirmed: ${reason}. It may have arrived before the connection dropped.`
    : `Not delivered: ${reason}.`);
}

// explainError turns one error entry into words a person understands.
function explainError(e) {
  const field = e.loc && e.loc.length ? e.loc[e.loc.length - 1] : "";
  switch (e.type) {
    case "rate_limited": return "You are sending messages too fast; wait a moment.";
    case "string_too_long": return `Your ${field || "message"} is too long. ${e.msg}.`;
    default: return `The server could not read that message: ${e.msg}.`;
  }
}

// isNew reports whether a message with this id has not been shown yet, and
// remembers it as the last one shown. Ids count up within a stream; a new
// epoch is a new stream, and everything in it is new.
function isNew(id) {
  if (!id) return true;
  if (state.lastId) {
    const last = idParts(state.lastId), next = idParts(id);
    if (next.epoch === last.epoch && next.seq <= last.seq) return false;
  }
  state.lastId = id;
  return true;
}

// remember notes a message shown without an id by its (name, cid), the
// oldest forgotten past SEEN_LIMIT.
function remember(name, cid) {
  state.seen.set(`${name}\n${cid}`, true);
  if (state.seen.size > SEEN_LIMIT) state.seen.delete(state.seen.keys().next().value);
}

// --- drawing -------------------------------------------------------------

// addNote puts a line about the conversation, not a message, in it.
function addNote(text) {
  const item = document.createElement("li");
  item.className = "note";
  item.textContent = text;
  $("messages").append(item);
  item.scrollIntoView({ block: "end" });
}

// addMessage draws one message. Ours (status "sending") carry a status
// line, changed by setStatus; others' have none.
function addMessage(author, text, status) {
  const item = document.createElement("li");
  item.className = status ? "message mine" : "message";
  const meta = document.createElement("div");
  meta.className = "meta";
  const who = document.createElement("span");
  who.className = "author";
  who.textContent = author; // textContent, never innerHTML: text stays text
  const when = document.createElement("time");
  const now = new Date();
  when.dateTime = now.toISOString();
  when.textContent = now.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  meta.append(who, " ", when);
  const body = document.createElement("p");
  body.className = "text";
  body.textContent = text;
  item.append(meta, body);
  if (status) {
    const line = document.createElement("p");
    line.className = "status";
    item.append(line);
    setStatus(item, status, "Sending…");
  }
  $("messages").append(item);
  item.scrollIntoView({ block: "end" });
  return item;
}

// setStatus shows where one of our messages stands, in words (which the
// messages list, a live region, reads out) and in its look (style.css).
function setStatus(item, kind, text) {
  item.dataset.status = kind;
  item.querySelector(".status").textContent = text;
}

// clipText shortens a message to quote it in an error.
function clipText(text) {
  const chars = Array.from(text.trim());
  return chars.length > 40 ? chars.slice(0, 40).join("") + "…" : chars.join("");
}

// --- page state ----------------------------------------------------------

function setBadge(text, kind) {
  const badge = $("badge");
  badge.textContent = text;
  badge.dataset.state = kind;
}

function setComposerEnabled(on) {
  $("message").disabled = !on;
  $("send").disabled = !on;
}

function toggleLog() {
  const open = $("log").hidden;
  $("log").hidden = !open;
  $("log-toggle").setAttribute("aria-expanded", String(open));
}

// logFrame records one raw frame: direction, time and text.
function logFrame(direction, text) {
  logEntry(direction === "out" ? "↑ sent" : "↓ received", text, direction);
}

function logNote(text) {
  logEntry("• event", text, "note");
}

function logEntry(label, text, kind) {
  const list = $("log-entries");
  const item = document.createElement("li");
  item.className = `log-${kind}`;
  const head = document.createElement("span");
  head.className = "log-head";
  head.textContent = `${label} ${new Date().toLocaleTimeString()}`;
  const body = document.createElement("code");
  body.textContent = text;
  item.append(head, body);
  list.append(item);
  while (list.childElementCount > LOG_LIMIT) list.firstElementChild.remove();
  if (!$("log").hidden) item.scrollIntoView({ block: "nearest" });
}

init();
