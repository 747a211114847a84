// The API docs page: fetches the AsyncAPI document this server serves and
// renders it, then lets the reader try the API live.
//
// Everything from the document goes into the page as text (textContent),
// never as HTML. No library, no network request beyond this server.

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

// Descriptions may hold `code` spans; show them as code, the rest as text.
function prose(text) {
  const p = el("p", "prose");
  String(text || "").split(/(`[^`]+`)/).forEach((part) => {
    if (part.startsWith("`") && part.endsWith("`") && part.length > 1) p.append(el("code", null, part.slice(1, -1)));
    else p.append(part);
  });
  return p;
}

function paragraphs(text) {
  return String(text || "").split(/\n\n+/).filter(Boolean).map(prose);
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
    ...paragraphs(info.description),
  ];

  parts.push(el("h2", null, "Servers"));
  for (const [name, server] of Object.entries(doc.servers || {})) {
    parts.push(el("p", null, el("strong", null, name), ": ", el("code", null, `${server.protocol}://${server.host}`), " ", server.description || ""));
  }

  const schemes = Object.entries(doc.components?.securitySchemes || {});
  if (schemes.length) {
    parts.push(el("h2", null, "Security"));
    for (const [name, scheme] of schemes) {
      parts.push(el("h3", null, el("code", null, name), ` ${schemeSummary(scheme)}`), ...paragraphs(scheme.description));
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
  if (channel.title) section.append(el("p", null, el("strong", null, channel.title), channel.summary ? ` ${channel.summary}` : ""));
  section.append(...paragraphs(channel.description));
  const params = Object.entries(channel.parameters || {});
  if (params.length) {
    const table = el("table");
    table.append(el("thead", null, row("th", ["Parameter", "Rule", "Examples", "Description"])));
    const body = el("tbody");
    for (const [name, p] of params) {
      body.append(row("td", [el("code", null, name), el("code", null, p["x-pattern"] || ""), (p.examples || []).join(", "), prose(p.description)]));
    }
    table.append(body);
    section.append(el("h3", null, "Parameters"), table);
  }
  return section;
}

function renderOperation(doc, id, op) {
  const card = el("section", `card operation op-${op.action}`);
  card.append(el("h3", null, el("span", `direction ${op.action}`, DIRECTION[op.action] || op.action), " ", op.title || id));
  if (op.summary) card.append(el("p", null, op.summary));
  if (op.description) card.append(...paragraphs(op.description));
  const names = (op.messages || []).map((m) => resolve(doc, m)).map((m) => m && m.name);
  card.append(el("p", null, "Message: ", ...names.map((n) => el("a", null, el("code", null, n)))));
  card.querySelectorAll("a").forEach((a, i) => (a.href = `#message-${names[i]}`));
  if (op.reply) {
    const replies = (op.reply.messages || []).map((m) => resolve(doc, m)?.name);
    card.append(el("p", null, "The server replies, to you only: ", ...replies.map((n) => el("code", null, n))));
  }
  return card;
}

function renderMessage(doc, id, message) {
  const section = el("section", "card message-doc");
  section.id = `message-${message.name}`;
  section.append(el("h3", null, el("code", null, message.name), ` ${message.title || ""}`));
  if (message.summary) section.append(el("p", null, el("strong", null, message.summary)));
  section.append(...paragraphs(message.description));
  section.append(el("p", "hint", `Content type: ${message.contentType || doc.defaultContentType}`));

  const table = el("table");
  table.append(el("thead", null, row("th", ["Field", "Type", "Required", "Limits", "Description"])));
  const body = el("tbody");
  for (const field of fields(doc, message.payload)) {
    body.append(row("td", [el("code", null, field.path), field.type, field.required ? "yes" : "no", field.limits, prose(field.description)]));
  }
  table.append(body);
  section.append(table);

  for (const example of message.examples || []) {
    section.append(el("h4", null, `Example: ${example.name || ""}`), el("p", "hint", example.summary || ""), pretty(example.payload));
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
  if (schema.pattern) parts.push(`matches ${schema.pattern}`);
  if (schema.enum) parts.push(`one of ${schema.enum.join(", ")}`);
  return parts.join("; ");
}

function row(cell, values) {
  const tr = el("tr");
  for (const v of values) tr.append(el(cell, null, v));
  return tr;
}

// --- try it --------------------------------------------------------------

const live = { socket: null, roomRule: /^.+$/ };

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
  const socket = new WebSocket(url);
  live.socket = socket;
  socket.onopen = () => {
    logLine("• open", url, "note");
    setConnected(true);
  };
  socket.onmessage = (e) => logLine("↓ received", e.data, "in");
  socket.onclose = (e) => {
    logLine("• closed", `code ${e.code}${e.reason ? ", " + e.reason : ""}`, "note");
    live.socket = null;
    setConnected(false);
  };
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
  $("try-send").disabled = !on;
  document.querySelectorAll("#try-examples button").forEach((b) => (b.disabled = !on));
}

function logLine(label, text, kind) {
  const item = el("li", `log-${kind}`, el("span", "log-head", `${label} ${new Date().toLocaleTimeString()}`), el("code", null, text));
  $("try-log").append(item);
  item.scrollIntoView({ block: "nearest" });
}

main();
