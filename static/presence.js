// Who is here, on the chat page: "3 here: Alice, Bob", "Carol joined",
// "Bob left", "Alice is typing…" (docs/protocol.md, "Who is here").
//
// chat.js asks for presence on its URL (presence.query), hands every frame
// here first (presence.receive), and tells us when it joins and leaves. The
// lines are made here, below the room bar; every name goes in as text, never
// as markup. Screen readers hear joins, leaves and who starts typing,
// politely, not every keystroke or every list change.

// The server forwards one typing frame a connection every 2 s; sending more
// is wasted. A name not heard typing for a while has stopped.
const TYPING_EVERY_MS = 2_000;
const TYPING_FOR_MS = 3_000;

const state = {
  send: null, // chat.js's sendFrame
  members: new Set(),
  count: 0,
  typing: new Map(), // name -> timer that ends its typing
  lastTyped: 0,
  myName: "",
};

// line makes, once, a line of the presence area before the messages.
function line(id, live) {
  let el = document.getElementById(id);
  if (el) return el;
  el = document.createElement("p");
  el.id = id;
  el.className = "presence-line";
  if (live) el.setAttribute("aria-live", "polite");
  const area = document.getElementById("messages");
  area.parentNode.insertBefore(el, area);
  return el;
}

// query is what the chat URL adds to ask for presence under name.
function query(name) {
  return `&presence&name=${encodeURIComponent(name)}`;
}

// start begins presence in a room: send is how typing frames go out.
function start(send, name) {
  state.send = send;
  state.myName = name;
  line("presence-summary", false);
  line("presence-news", true);
  line("presence-typing", true);
  const input = document.getElementById("message");
  if (!input.dataset.presence) {
    input.dataset.presence = "1";
    input.addEventListener("input", typed);
  }
}

// stop clears every line: the page left the room.
function stop() {
  state.send = null;
  state.members.clear();
  for (const timer of state.typing.values()) clearTimeout(timer);
  state.typing.clear();
  for (const id of ["presence-summary", "presence-news", "presence-typing"]) {
    const el = document.getElementById(id);
    if (el) el.remove();
  }
}

// typed sends a typing frame, at most one every TYPING_EVERY_MS.
function typed() {
  const now = Date.now();
  if (!state.send || now - state.lastTyped < TYPING_EVERY_MS || !document.getElementById("message").value) return;
  if (state.send({ action: "typing" })) state.lastTyped = now;
}

// receive takes the frames of presence and reports whether frame was one.
function receive(frame) {
  const p = frame.payload;
  switch (frame.action) {
    case "presence":
      if (!p || !Array.isArray(p.members)) return true;
      state.members = new Set(p.members.map((m) => String(m.name)));
      state.count = Number(p.count) || 0;
      summary(p.partial);
      return true;
    case "presence_diff":
      if (!p) return true;
      for (const name of p.joins || []) state.members.add(String(name));
      for (const name of p.leaves || []) {
        state.members.delete(String(name));
        stopTyping(String(name));
      }
      state.count = Number(p.count) || 0;
      summary(p.partial);
      news(p.joins || [], p.leaves || []);
      return true;
    case "typing":
      if (p && typeof p.name === "string") startTyping(p.name);
      return true;
  }
  return false;
}

// summary shows who is here: "3 here: Alice, Bob".
function summary(partial) {
  const names = [...state.members].sort();
  let text = `${state.count} here`;
  if (names.length) text += `: ${names.join(", ")}`;
  if (partial) text += " (this server only, for now)";
  line("presence-summary", false).textContent = text;
}

// news says who came and went, others than us.
function news(joins, leaves) {
  const parts = [];
  for (const name of joins) if (name !== state.myName) parts.push(`${name} joined`);
  for (const name of leaves) if (name !== state.myName) parts.push(`${name} left`);
  if (parts.length > 3) parts.splice(3, parts.length - 3, `and ${parts.length - 3} more`);
  if (parts.length) line("presence-news", true).textContent = parts.join(", ");
}

// startTyping shows that name types, until TYPING_FOR_MS without a word.
function startTyping(name) {
  const known = state.typing.has(name);
  clearTimeout(state.typing.get(name));
  state.typing.set(name, setTimeout(() => stopTyping(name), TYPING_FOR_MS));
  if (!known) showTyping(); // a change, not every frame: screen readers hear it once
}

function stopTyping(name) {
  if (!state.typing.has(name)) return;
  clearTimeout(state.typing.get(name));
  state.typing.delete(name);
  showTyping();
}

function showTyping() {
  const names = [...state.typing.keys()].sort();
  let text = "";
  if (names.length === 1) text = `${names[0]} is typing…`;
  else if (names.length > 1) text = `${names.slice(0, 3).join(", ")} are typing…`;
  line("presence-typing", true).textContent = text;
}

export const presence = { query, start, stop, receive };
