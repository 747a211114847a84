// The chat page: join a room, then talk over one WebSocket.
//
// Everything the page sends or receives is one JSON object per frame, as
// docs/protocol.md says. Open the Log panel to watch them go by.

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

const LOG_LIMIT = 500; // frames kept in the log panel

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
};

// The parts of a message id, to tell newer from older in one stream.
const idParts = (id) => {
  const [epoch, seq] = id.split("-");
  return { epoch, seq: Number(seq) };
};

// Characters as the server counts them: code points, not UTF-16 units, so
// an emoji counts as one.
const charCount = (s) => Array.from(s).length;

// --- joining and leaving -------------------------------------------------

function init() {
  $("name").value = localStorage.getItem("roomchat.name") || "";
  const room = new URLSearchParams(location.search).get("room");
  if (room) $("room").value = room;

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

  state.name = name;
  state.room = room;
  state.leaving = false;
  state.lastId = "";
  localStorage.setItem("roomchat.name", name);
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
  if (state.socket) state.socket.close(1000, "left the room");
  state.socket = null;
  history.replaceState(null, "", location.pathname);
  sessionStorage.removeItem("roomchat.joined");
  $("messages").replaceChildren();
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
  const url = `${scheme}//${location.host}/ws/chat/${encodeURIComponent(state.room)}/?${ask}`;
  setBadge("Connecting", "connecting");
  const socket = new WebSocket(url);
  state.socket = socket;

  socket.onopen = () => {
    if (socket !== state.socket) return;
    state.retryMs = RETRY_FIRST_MS;
    setBadge("Connected", "connected");
    setComposerEnabled(true);
    $("chat-error").textContent = "";
    state.pingTimer = setInterval(() => sendFrame({ action: "ping" }), PING_EVERY_MS);
    $("message").focus();
  };

  socket.onmessage = (event) => {
    logFrame("in", event.data);
    let frame;
    try {
      frame = JSON.parse(event.data);
    } catch {
      return; // the server only sends JSON; anything else is not ours to show
    }
    receive(frame);
  };

  socket.onclose = (event) => {
    clearInterval(state.pingTimer);
    if (socket !== state.socket) return; // an old socket, already replaced
    state.socket = null;
    setComposerEnabled(false);
    logNote(`closed: code ${event.code}${event.reason ? ", " + event.reason : ""}`);
    if (state.leaving) return;
    // Wait longer after each failure, with some jitter so that many tabs
    // dropped at once do not all come back in the same instant.
    const wait = state.retryMs * (0.75 + Math.random() / 2);
    state.retryMs = Math.min(state.retryMs * 2, RETRY_MAX_MS);
    setBadge(`Disconnected: reconnecting in ${Math.round(wait / 1000)} s`, "disconnected");
    $("chat-error").textContent = closeExplanation(event.code);
    state.retryTimer = setTimeout(connect, wait);
  };
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

// --- messages ------------------------------------------------------------

function sendChat() {
  const input = $("message");
  const message = input.value;
  if (!message.trim()) return;
  const n = charCount(message);
  if (n > MAX_MESSAGE_CHARS) {
    $("chat-error").textContent = `That message is ${n} characters long; the limit is ${MAX_MESSAGE_CHARS}.`;
    return;
  }
  const sent = sendFrame({ action: "new_chat_message", payload: { message, name: state.name } });
  if (!sent) return;
  // The server does not echo our own messages back, so we draw them now;
  // a "said" frame then tells us its id.
  addMessage("You", message, true);
  input.value = "";
  $("chat-error").textContent = "";
}

// receive handles one frame from the server, by its action.
function receive(frame) {
  switch (frame.action) {
    case "new_chat_message":
      if (isNew(frame.id)) addMessage(frame.payload.name, frame.payload.message, false);
      break;
    case "said":
      isNew(frame.payload.id);
      break;
    case "history": {
      const fresh = frame.payload.messages.filter((m) => isNew(m.id));
      if (fresh.length === 0) break;
      // On joining, the room's earlier messages are set apart from the
      // live ones; after a drop, what was missed simply comes in order.
      const joining = $("messages").childElementCount === 0;
      if (joining) addNote("Earlier messages");
      for (const m of fresh) addMessage(m.name, m.message, false);
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
    case "error":
      $("chat-error").textContent = frame.payload.map(explainError).join(" ");
      break;
  }
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

// addNote puts a line about the conversation, not a message, in it.
function addNote(text) {
  const item = document.createElement("li");
  item.className = "note";
  item.textContent = text;
  $("messages").append(item);
  item.scrollIntoView({ block: "end" });
}

function addMessage(author, text, mine) {
  const item = document.createElement("li");
  item.className = mine ? "message mine" : "message";
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
  $("messages").append(item);
  item.scrollIntoView({ block: "end" });
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
