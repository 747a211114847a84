// The API docs page: fetches the AsyncAPI document this server serves and
// renders it, then lets the reader try the API live.
//
// Everything from the document goes into the page as text nodes, never as
// HTML: its Markdown (markdown below) is read into elements built one by
// one, so markup in a description stays text. No library, no network
// request beyond this server.

const $ = (id) => document.getElementById(id);

// el builds an element with optional class and text children.
function el(tag, className, ...children) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

// resolve follows a local "$ref" ("#/components/messages/ping") until it
// reaches an object that is not a reference.
function resolve(doc, value) {
  while (value && typeof value.$ref === "string" && value.$ref.startsWith("#/")) {
    value = value.$ref.slice(2).split("/")
      .map((part) => part.replaceAll("~1", "/").replaceAll("~0", "~"))
      .reduce((node, key) => (node ? node[key] : undefined), doc);
  }
  return value;
}

// The Markdown of AsyncAPI descriptions (CommonMark), as much of it as a
// document like this one uses: paragraphs, "- " lists, `code`, **strong**,
// *emphasis* and [links](url). Anything else stays text as written.
const INLINE = /`([^`]+)`|\*\*([^*]+)\*\*|\*([^*\s](?:[^*]*[^*\s])?)\*(?![\w*])|\[([^\]]+)\]\(([^()\s]+)\)/g;

// inline returns the nodes of one run of Markdown text.
function inline(text) {
  const nodes = [];
  let at = 0;
  for (const m of text.matchAll(INLINE)) {
    // *emphasis* opens only after a space or punctuation: 2*3*4 is text.
    if (m[3] !== undefined && m.index > 0 && /[\w*]/.test(text[m.index - 1])) continue;
    nodes.push(text.slice(at, m.index));
    at = m.index + m[0].length;
    if (m[1] !== undefined) nodes.push(el("code", null, m[1]));
    else if (m[2] !== undefined) nodes.push(el("strong", null, ...inline(m[2])));
    else if (m[3] !== undefined) nodes.push(el("em", null, ...inline(m[3])));
    else nodes.push(link(m[4], m[5]));
  }
  nodes.push(text.slice(at));
  return nodes.filter((n) => n !== "");
}

// link makes a Markdown link, if its target is a web address or a place on
// this site; any other scheme (javascript:, data:) leaves its text alone.
function link(text, href) {
  if (!/^(https?:\/\/|#|\/(?!\/))/i.test(href)) return el("span", null, ...inline(text));
  const a = el("a", null, ...inline(text));
  a.href = href;
  return a;
}

// markdown returns the blocks of a description: paragraphs, and lists of
// lines that start with "- ".
function markdown(text) {
  return String(text || "").split(/\n\s*\n/).filter((b) => b.trim()).map((block) => {
    const lines = block.trim().split("\n");
    if (lines.every((l) => /^\s*[-*] /.test(l))) {
      return el("ul", "prose", ...lines.map((l) => el("li", null, ...inline(l.replace(/^\s*[-*] /, "")))));
    }
    return el("p", "prose", ...inline(lines.join(" ")));
  });
}

// prose is one short description, such as a table cell's, as one element.
function prose(text) {
  const blocks = markdown(text);
  if (blocks.length === 0) return ""; // an empty cell, which a narrow table hides
  return blocks.length === 1 ? blocks[0] : el("div", "prose", ...blocks);
}

// Examples wrap (docs.css) rather than scroll sideways: a region that
// scrolls must take keyboard focus, and with dozens of examples a keyboard
// user would tab through them all to reach Try it.
function pretty(value) {
  return el("pre", "json", JSON.stringify(value, null, 2));
}

// What an operation means to the reader, who is the client: the document
// speaks from the server's side, so its "receive" is what you send.
const DIRECTION = {
  receive: "You send",
  send: "The server sends",
};

// --- rendering -----------------------------------------------------------

async function main() {
  const article = $("doc");
  let doc;
  try {
    const response = await fetch("/asyncapi/schema/");
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    doc = await response.json();
  } catch (err) {
    $("doc-status").textContent = `Could not load the API description: ${err.message}`;
    return;
  }
  article.replaceChildren(...renderDoc(doc));
  article.removeAttribute("aria-busy");
  setUpTryIt(doc);
}

function renderDoc(doc) {
  const info = doc.info || {};
  const parts = [
    el("h2", "doc-title", `${info.title} `, el("span", "version", `v${info.version}`), el("span", "version", ` AsyncAPI ${doc.asyncapi}`)),
    ...markdown(info.description),
  ];

  parts.push(el("h2", null, "Servers"));
  for (const [name, server] of Object.entries(doc.servers || {})) {
    parts.push(el("p", null, el("strong", null, name), ": ", el("code", null, `${server.protocol}://${server.host}`)), ...markdown(server.description));
  }

  const schemes = Object.entries(doc.components?.securitySchemes || {});
  if (schemes.length) {
    parts.push(el("h2", null, "Security"));
    for (const [name, scheme] of schemes) {
      parts.push(el("h3", null, el("code", null, name), ` ${schemeSummary(scheme)}`), ...markdown(scheme.description));
    }
  }

  for (const [id, channel] of Object.entries(doc.channels || {})) {
    parts.push(renderChannel(doc, id, channel));
  }

  parts.push(el("h2", null, "Operations"));
  const ops = el("div", "operations");
  for (const [id, op] of Object.entries(doc.operations || {})) {
    ops.append(renderOperation(doc, id, op));
  }
  parts.push(ops);

  parts.push(el("h2", null, "Messages"));
  for (const [id, message] of Object.entries(doc.components?.messages || {})) {
    parts.push(renderMessage(doc, id, message));
  }
  return parts;
}

// schemeSummary says in a few words how a security scheme carries its
// credential: "HTTP bearer (JWT)", "header Sec-WebSocket-Protocol".
function schemeSummary(scheme) {
  if (scheme.type === "http") return `HTTP ${scheme.scheme || ""}${scheme.bearerFormat ? ` (${scheme.bearerFormat})` : ""}`;
  if (scheme.type === "httpApiKey" || scheme.type === "apiKey") return `${scheme.in} ${scheme.name || ""}`;
  return scheme.type || "";
}

function renderChannel(doc, id, channel) {
  const section = el("section", "card channel");
  section.append(el("h2", null, "Channel ", el("code", null, channel.address)));
  if (channel.title) section.append(el("p", null, el("strong", null, channel.title), ...(channel.summary ? [" ", ...inline(channel.summary)] : [])));
  section.append(...markdown(channel.description));
  const params = Object.entries(channel.parameters || {});
  if (params.length) {
    const rows = params.map(([name, p]) => [el("code", null, name), el("code", null, p["x-pattern"] || ""), (p.examples || []).join(", "), prose(p.description)]);
    section.append(el("h3", null, "Parameters"), table(["Parameter", "Rule", "Examples", "Description"], rows));
  }
  return section;
}

function renderOperation(doc, id, op) {
  const card = el("section", `card operation op-${op.action}`);
  card.append(el("h3", null, el("span", `direction ${op.action}`, DIRECTION[op.action] || op.action), " ", op.title || id));
  if (op.summary) card.append(el("p", null, ...inline(op.summary)));
  if (op.description) card.append(...markdown(op.description));
  const names = (op.messages || []).map((m) => resolve(doc, m)).map((m) => m && m.name);
  card.append(el("p", null, names.length > 1 ? "Messages: " : "Message: ", ...commas(names.map(messageLink))));
  if (op.reply) {
    const replies = (op.reply.messages || []).map((m) => resolve(doc, m)?.name);
    card.append(el("p", null, "The server replies, to you only: ", ...commas(replies.map(messageLink))));
  }
  return card;
}

function renderMessage(doc, id, message) {
  const section = el("section", "card message-doc");
  section.id = `message-${message.name}`;
  section.append(el("h3", null, el("code", null, message.name), ` ${message.title || ""}`));
  if (message.summary) section.append(el("p", null, el("strong", null, ...inline(message.summary))));
  section.append(...markdown(message.description));
  section.append(el("p", "hint", `Content type: ${message.contentType || doc.defaultContentType}`));

  const rows = fields(doc, message.payload).map((f) => [el("code", null, f.path), f.type, f.required ? "yes" : "no", f.limits, prose(f.description)]);
  section.append(table(["Field", "Type", "Required", "Limits", "Description"], rows));

  for (const example of message.examples || []) {
    section.append(el("h4", null, `Example: ${example.name || ""}`), el("p", "hint", ...inline(example.summary || "")), pretty(example.payload));
    const cause = message["x-caused-by"]?.[example.name];
    if (cause) section.append(el("p", "hint", "Sent to get it:"), pretty(cause));
  }
  return section;
}

// fields flattens a JSON Schema into rows: payload.message, payload.name ...
function fields(doc, schema, path = "", required = true, out = []) {
  schema = resolve(doc, schema) || {};
  if (path) out.push({ path, type: schemaType(schema), required, limits: limits(schema), description: schema.description || "" });
  const needed = new Set(schema.required || []);
  for (const [key, child] of Object.entries(schema.properties || {})) {
    fields(doc, child, path ? `${path}.${key}` : key, needed.has(key), out);
  }
  if (schema.items) fields(doc, schema.items, `${path}[]`, true, out);
  return out;
}

function schemaType(schema) {
  return schema.type === "array" && schema.items ? "array" : schema.type || "any";
}

function limits(schema) {
  const parts = [];
  if (schema.const !== undefined) parts.push(`always ${JSON.stringify(schema.const)}`);
  if (schema.minLength !== undefined && schema.maxLength !== undefined) parts.push(`${schema.minLength} to ${schema.maxLength} characters`);
  else if (schema.maxLength !== undefined) parts.push(`at most ${schema.maxLength} characters`);
  else if (schema.minLength !== undefined) parts.push(`at least ${schema.minLength} characters`);
  if (schema.minItems !== undefined) parts.push(`at least ${schema.minItems}`);
  if (schema.enum) parts.push(`one of ${schema.enum.join(", ")}`);
  if (schema.pattern) parts.push(el("span", null, "matches ", pattern(schema.pattern)));
  return parts.length ? el("span", null, ...parts.flatMap((p, i) => (i ? ["; ", p] : [p]))) : "";
}

// pattern shows a regular expression as code that a line may break after
// a hyphen only (docs.css).
function pattern(text) {
  return el("code", "pattern", ...text.split(/(?<=-)/).map((part) => el("span", null, part)));
}

// table lays out rows under their headings. Each cell carries its heading
// (data-label), which a narrow table shows beside it (docs.css).
function table(headings, rows) {
  const body = el("tbody");
  for (const values of rows) {
    const tr = el("tr");
    values.forEach((v, i) => {
      const td = el("td", null, v === "" ? null : v); // empty, a narrow table hides it
      td.dataset.label = headings[i];
      tr.append(td);
    });
    body.append(tr);
  }
  const head = el("tr", null, ...headings.map((h) => el("th", null, h)));
  head.querySelectorAll("th").forEach((th) => (th.scope = "col"));
  return el("div", "fields", el("table", null, el("thead", null, head), body));
}

// messageLink links to a message's section by its name.
function messageLink(name) {
  const a = el("a", null, el("code", null, name));
  a.href = `#message-${name}`;
  return a;
}

// commas separates nodes with ", ", so that two never run together.
function commas(nodes) {
  return nodes.flatMap((n, i) => (i ? [", ", n] : [n]));
}

// --- try it --------------------------------------------------------------

const live = { socket: null, roomRule: /^.+$/ };

const TOKEN_PROTOCOL = "roomchat.token"; // the subprotocol a token comes with
const CLOSE_TOKEN_EXPIRED = 4401; // the server's close when a token runs out

// setUpTryIt offers a button for every example a client may send: the
// messages of the operations the server receives, and the frames that cause
// each documented answer (one button for a frame that is both).
function setUpTryIt(doc) {
  // The room rule comes from the document itself, so there is one copy.
  const channel = Object.values(doc.channels || {})[0];
  const pattern = channel?.parameters?.room?.["x-pattern"];
  if (pattern) live.roomRule = new RegExp(pattern);
  const box = $("try-examples");
  const offered = new Set();
  for (const op of Object.values(doc.operations || {})) {
    if (op.action !== "receive") continue;
    for (const ref of op.messages || []) {
      const message = resolve(doc, ref);
      for (const example of message.examples || []) {
        box.append(exampleButton(`Send ${message.name}: ${example.name}`, example.payload));
        offered.add(JSON.stringify(example.payload));
      }
    }
  }
  for (const message of Object.values(doc.components?.messages || {})) {
    for (const [name, frame] of Object.entries(message["x-caused-by"] || {})) {
      if (offered.has(JSON.stringify(frame))) continue;
      box.append(exampleButton(`Cause ${message.name}: ${name}`, frame));
      offered.add(JSON.stringify(frame));
    }
  }
  $("try-connect").addEventListener("submit", (e) => {
    e.preventDefault();
    live.socket ? live.socket.close(1000, "done trying") : connect();
  });
  $("try-send").addEventListener("click", () => send($("try-custom").value));
  setConnected(false);
}

function exampleButton(label, frame) {
  const button = el("button", "small example", label);
  button.type = "button";
  button.disabled = true;
  button.addEventListener("click", () => {
    $("try-custom").value = JSON.stringify(frame);
    send(JSON.stringify(frame));
  });
  return button;
}

function connect() {
  const room = $("try-room").value.trim();
  if (!live.roomRule.test(room)) {
    logLine("• note", "Room names are 1 to 99 letters, digits, dots, underscores or hyphens.", "note");
    return;
  }
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const url = `${scheme}//${location.host}/ws/chat/${encodeURIComponent(room)}/`;
  $("try-badge").textContent = "Connecting";
  $("try-badge").dataset.state = "connecting";
  // A browser cannot set Authorization on a WebSocket: the token goes as
  // the second of two subprotocols (docs/protocol.md, Tokens).
  const token = $("try-token").value.trim();
  const socket = token ? new WebSocket(url, [TOKEN_PROTOCOL, token]) : new WebSocket(url);
  live.socket = socket;
  let opened = false;
  socket.onopen = () => {
    opened = true;
    logLine("• open", url, "note");
    setConnected(true);
  };
  socket.onmessage = (e) => logLine("↓ received", e.data, "in");
  socket.onclose = async (e) => {
    logLine("• closed", `code ${e.code}${e.reason ? ", " + e.reason : ""}`, "note");
    live.socket = null;
    setConnected(false);
    if (e.code === CLOSE_TOKEN_EXPIRED) logLine("• note", "The token expired: paste a new one in Token, then connect again.", "note");
    else if (!opened && (await serverIsUp())) {
      logLine("• note", token
        ? "The server is up and refused the handshake: the token is expired, signed with another secret, or not for this room."
        : "The server is up and refused the handshake: it asks for a token. Paste one in Token, then connect again.", "note");
      $("try-token").focus();
    }
  };
}

// serverIsUp asks the server for a plain page: a browser is not told why a
// WebSocket handshake failed (a 401 and a lost network look alike), so an
// answer here means the server refused it.
async function serverIsUp() {
  try {
    return (await fetch("/healthz", { cache: "no-store" })).status < 500;
  } catch {
    return false;
  }
}

function send(text) {
  if (!live.socket || live.socket.readyState !== WebSocket.OPEN) return;
  live.socket.send(text);
  logLine("↑ sent", text, "out");
}

function setConnected(on) {
  $("try-badge").textContent = on ? "Connected" : "Disconnected";
  $("try-badge").dataset.state = on ? "connected" : "disconnected";
  $("try-toggle").textContent = on ? "Disconnect" : "Connect";
  $("try-room").disabled = on;
  $("try-token").disabled = on;
  $("try-send").disabled = !on;
  document.querySelectorAll("#try-examples button").forEach((b) => (b.disabled = !on));
}

function logLine(label, text, kind) {
  const item = el("li", `log-${kind}`, el("span", "log-head", `${label} ${new Date().toLocaleTimeString()}`), el("code", null, text));
  $("try-log").append(item);
  item.scrollIntoView({ block: "nearest" });
}

main();
