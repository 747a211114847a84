// Reference "what a Node user would write" peer for the roomchat protocol
// (docs/protocol.md in the roomchat repository) on ws@8. PORT (default 8002), HOST (default
// 127.0.0.1), ORIGINS (comma-separated extra allowed Origin values).
// Deviations from protocol.md, kept on purpose (a typical ws server):
//  - a frame over 64 KiB is closed by ws with 1009, not answered with frame_too_large;
//  - no per-connection rate limit;
//  - a slow client is detected by bufferedAmount (> 1 MiB) rather than a 256-frame queue.
import http from 'node:http';
import { WebSocketServer } from 'ws';

const PORT = Number(process.env.PORT || 8002);
const HOST = process.env.HOST || '127.0.0.1';
const ORIGINS = new Set((process.env.ORIGINS || '').split(',').map((s) => s.trim().toLowerCase()).filter(Boolean));
const ROOM_RE = /^[A-Za-z0-9._-]{1,99}$/;
const MAX_BUFFERED = 1 << 20;
const IDLE_MS = 60_000;
const PONG = Buffer.from('{"action":"pong","payload":null}');

const rooms = new Map(); // room name -> Set of sockets
let connections = 0;

const server = http.createServer((req, res) => {
  if (req.url === '/healthz') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ status: 'ok', rooms: rooms.size, connections }) + '\n');
    return;
  }
  res.writeHead(404, { 'content-type': 'text/plain' });
  res.end('not found\n');
});
const wss = new WebSocketServer({ noServer: true, maxPayload: 64 * 1024 });

function refuse(socket, code, reason) {
  socket.end(`HTTP/1.1 ${code} ${http.STATUS_CODES[code]}\r\nContent-Type: text/plain\r\n` +
    `Content-Length: ${Buffer.byteLength(reason)}\r\nConnection: close\r\n\r\n${reason}`);
}

server.on('upgrade', (req, socket, head) => {
  const m = /^\/ws\/chat\/([^?]*?)\/?(\?.*)?$/.exec(req.url);
  let room = null;
  try { room = m && decodeURIComponent(m[1]); } catch { /* bad escape */ }
  if (!m || !room || !ROOM_RE.test(room)) {
    return refuse(socket, m ? 400 : 404, m ? 'invalid room name: use 1-99 characters of A-Z a-z 0-9 . _ -\n' : 'not found\n');
  }
  const origin = req.headers.origin;
  if (origin && !ORIGINS.has(origin.toLowerCase())) {
    let host = null;
    try { host = new URL(origin).host; } catch { /* not a URL */ }
    if (!host || host.toLowerCase() !== String(req.headers.host || '').toLowerCase()) {
      return refuse(socket, 403, 'cross-origin request refused\n');
    }
  }
  wss.handleUpgrade(req, socket, head, (ws) => join(ws, room));
});

const err = (type, loc, msg) => ({ type, loc, msg });
const sendErrors = (ws, errs) => ws.send(JSON.stringify({ action: 'error', payload: errs }));
const chars = (s) => { let n = 0; for (const _ of s) n++; return n; };

function join(ws, room) {
  let members = rooms.get(room);
  if (!members) rooms.set(room, (members = new Set()));
  members.add(ws);
  connections++;
  ws.lastSeen = Date.now();
  const seen = () => { ws.lastSeen = Date.now(); };
  ws.on('ping', seen);
  ws.on('pong', seen);
  ws.on('message', (data, isBinary) => {
    seen();
    if (isBinary) return ws.close(1003, 'binary frames are not supported');
    handle(ws, members, data.toString('utf8')); // ws already closed invalid UTF-8 with 1007
  });
  ws.on('close', () => {
    connections--;
    members.delete(ws);
    if (members.size === 0 && rooms.get(room) === members) rooms.delete(room);
  });
  ws.on('error', () => {});
}

function handle(ws, members, text) {
  let msg;
  try { msg = JSON.parse(text); } catch { return sendErrors(ws, [err('json_invalid', [], 'Invalid JSON')]); }
  if (msg === null || typeof msg !== 'object' || Array.isArray(msg)) {
    return sendErrors(ws, [err('model_type', [], 'Input should be an object')]);
  }
  const { action } = msg;
  if (typeof action !== 'string') {
    return sendErrors(ws, [err('union_tag_not_found', [], "Unable to extract tag using discriminator 'action'")]);
  }
  if (action === 'ping') {
    if (msg.payload !== undefined && msg.payload !== null) {
      return sendErrors(ws, [err('none_required', ['ping', 'payload'], 'Input should be None')]);
    }
    return ws.send(PONG, { binary: false });
  }
  if (action !== 'new_chat_message') {
    return sendErrors(ws, [err('union_tag_invalid', [], `Input tag '${action}' found using 'action' does not match any of the expected tags: 'new_chat_message', 'ping'`)]);
  }
  const loc = ['new_chat_message', 'payload'];
  const p = msg.payload;
  if (p === undefined) return sendErrors(ws, [err('missing', loc, 'Field required')]);
  if (p === null || typeof p !== 'object' || Array.isArray(p)) {
    return sendErrors(ws, [err('model_type', loc, 'Input should be a valid dictionary')]);
  }
  const errs = [];
  for (const [key, limit] of [['message', 4000], ['name', 100]]) {
    const v = p[key];
    if (!Object.hasOwn(p, key)) errs.push(err('missing', [...loc, key], 'Field required'));
    else if (typeof v !== 'string') errs.push(err('string_type', [...loc, key], 'Input should be a valid string'));
    else if (v.length > limit && chars(v) > limit) {
      errs.push(err('string_too_long', [...loc, key], `String should have at most ${limit} characters`));
    }
  }
  if (errs.length) return sendErrors(ws, errs);
  // Encoded once, re-built from the validated fields only, sent to everyone else.
  const frame = Buffer.from(JSON.stringify({ action, payload: { message: p.message, name: p.name } }));
  for (const peer of members) {
    if (peer === ws || peer.readyState !== 1) continue;
    if (peer.bufferedAmount > MAX_BUFFERED) peer.close(1008, 'too slow');
    else peer.send(frame, { binary: false });
  }
}

setInterval(() => {
  const cutoff = Date.now() - IDLE_MS;
  for (const members of rooms.values()) {
    for (const ws of members) if (ws.lastSeen < cutoff) ws.close(1001, 'idle timeout');
  }
}, 5_000).unref();

function shutdown() {
  server.close();
  for (const members of rooms.values()) for (const ws of members) ws.close(1001, 'server shutting down');
  setTimeout(() => process.exit(0), 500).unref();
  setTimeout(() => { for (const ws of wss.clients) ws.terminate(); }, 300).unref();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);

server.listen(PORT, HOST, () => console.log(`nodews listening on ${HOST}:${PORT}`));
