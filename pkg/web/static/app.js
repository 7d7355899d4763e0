// Switchboard web client: one plain ES2020 module, no build step, nothing fetched from
// anywhere but its own origin. It speaks the wire contract (PROTOCOL.md sections 2-4):
// the JSON API at /api/v1 (authenticated by the HttpOnly `chat_session` cookie, so every
// fetch uses credentials 'same-origin') and the WebSocket at ws(s)://<location.host>/ws.
//
// Every piece of user data (names, message bodies, server error text) reaches the page
// through textContent, Text nodes or attribute values, never through innerHTML.
//
// Stable hooks for automated browser tests (chromedp). Keep them when changing markup:
//   #login-view, #app-view    the two screens; the inactive one has [hidden]
//   #login-username           username field (login and register)
//   #login-password           password field
//   #login-submit             logs in (submits #login-form)
//   #register-submit          registers, then logs in with the same credentials
//   #logout                   logs out
//   #current-user             the signed-in username
//   #new-thread-name          new conversation: name
//   #new-thread-members       new conversation: member usernames, comma/space separated
//   #new-thread-submit        creates it (submits #new-thread-form) and opens it
//   #thread-list              <ul>; items li.thread-item[data-thread-id], the open one with
//                             [aria-current="true"]; each holds .thread-name, .thread-preview
//                             and a .unread badge (text = count, [hidden] when 0), and a
//                             button.thread-open to activate it (clicking the item works too)
//   #thread-title             name of the open conversation
//   #thread-members           li.member[data-user-id][data-online="true"|"false"]
//   #messages                 <ol>, scrolls; items li.message[data-seq][data-id] in seq order,
//                             own ones with class .own; a not-yet-stored own message has only
//                             [data-client-msg-id]. [data-status] is sending|queued|failed|sent
//                             (own) and each item holds .sender, .time, .body, .status
//                             ("sending…", "sent", "failed: …") and button.retry when failed.
//                             The first child, #history-row (not a .message), holds
//                             #load-older while older history exists.
//   #composer                 textarea; Enter sends, Shift+Enter inserts a newline
//   #send                     send button
//   #typing                   "alice is typing…"
//   #back                     back to the list (shown below 700px width)
//   #host-footer              "connected to host <host_id> · conn <conn_id>" or "reconnecting…";
//                             [data-state] is connecting|connected|reconnecting
//   #error                    global error text (role=alert); #error-banner is [hidden] when empty
//   #live-region              aria-live announcements of new messages
//   body[data-screen]         "login" or "app"; body.thread-open while a conversation is open

const API = '/api/v1';
const PAGE_LIMIT = 50;
const SYNC_LIMIT = 200;
const TYPING_SEND_MS = 2000;
const TYPING_SHOW_MS = 3000;
const PRESENCE_MS = 10000;
const PRESENCE_MAX_IDS = 100;
const THREADS_REFRESH_MS = 30000;
const PING_MS = 20000;
const PONG_TIMEOUT_MS = 10000;
const CONNECT_TIMEOUT_MS = 10000;
const BACKOFF_BASE_MS = 500;
const BACKOFF_CAP_MS = 10000;
const STABLE_CONN_MS = 5000;
const SEND_TIMEOUT_MS = 15000;
const MAX_BODY_BYTES = 8192;
const MAX_FRAME_BYTES = 16 * 1024;
const NEAR_TOP_PX = 120;
const NEAR_BOTTOM_PX = 80;

// ---------------------------------------------------------------------------------------
// Small helpers

const $ = (id) => document.getElementById(id);
const utf8 = new TextEncoder();
const byteLength = (s) => utf8.encode(s).length;

// h builds an element. Children that are strings become Text nodes, so data is never
// parsed as HTML. Props: class, text (textContent), dataset, hidden, any other attribute.
function h(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

// setText changes textContent only when it differs, to avoid needless layout work.
function setText(e, text) {
  if (e.textContent !== text) e.textContent = text;
}

// uuid returns a random RFC 4122 v4 id. crypto.randomUUID exists only in secure contexts
// (https or localhost); a LAN address over plain http falls back to getRandomValues.
function uuid() {
  if (typeof crypto.randomUUID === 'function') return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const x = [...b].map((n) => n.toString(16).padStart(2, '0')).join('');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const dateTimeFmt = new Intl.DateTimeFormat(undefined, {
  month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit',
});
const fullFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'full', timeStyle: 'medium' });

function formatTime(value) {
  const d = value instanceof Date ? value : new Date(value);
  if (Number.isNaN(d.getTime())) return '';
  return d.toDateString() === new Date().toDateString() ? timeFmt.format(d) : dateTimeFmt.format(d);
}

function fullTime(value) {
  const d = value instanceof Date ? value : new Date(value);
  return Number.isNaN(d.getTime()) ? '' : fullFmt.format(d);
}

const isPageVisible = () => document.visibilityState === 'visible';

// ---------------------------------------------------------------------------------------
// State. Everything of one login lives in S; logging out replaces it, and async work
// started under an older S checks `S !== s0` after each await and drops its result.

function newState() {
  return {
    me: null, // {id, username}
    closing: false, // logging out: no reconnects
    threads: new Map(), // thread id -> thread model (newThread)
    openId: null, // the conversation shown in the message view
    pending: new Map(), // client_msg_id -> own message not yet confirmed (insertion order = send order)
    fetching: new Map(), // thread id -> in-flight GET /threads/{id}
    presence: new Map(), // user id -> online (bool)
    ws: null,
    hello: null, // {host_id, conn_id} of the current socket after its hello
    synced: false, // catch-up after hello is complete
    everConnected: false,
    attempt: 0, // reconnect attempt, for backoff
    connectedAt: 0,
    lastTypingSent: 0,
    timers: new Set(), // every timeout/interval id of this login, cleared on logout
    ackTimer: 0,
    ackDirty: new Set(), // thread ids whose ack may have moved
    readTimer: 0,
    renderTimer: 0,
    dirty: { threads: false, messages: false, header: false, typing: false },
    pingTimer: 0,
    pongTimer: 0,
    connectTimer: 0,
    reconnectTimer: 0,
    typingTimer: 0,
  };
}

let S = newState();

function later(fn, ms) {
  const s0 = S;
  const id = setTimeout(() => {
    s0.timers.delete(id);
    if (S === s0) fn();
  }, ms);
  s0.timers.add(id);
  return id;
}

function every(fn, ms) {
  const s0 = S;
  const id = setInterval(() => {
    if (S === s0) fn();
  }, ms);
  s0.timers.add(id);
  return id;
}

function cancel(id) {
  if (!id) return 0;
  clearTimeout(id);
  clearInterval(id);
  S.timers.delete(id);
  return 0;
}

// A thread model holds the API's thread fields plus what this client knows of its
// messages:
//   msgs     seq -> message, every message held (deduped by id and by seq)
//   lowSeq   the lowest seq of the contiguous window shown in the message view; every
//            held seq from lowSeq up is shown, in seq order
//   loaded   the newest page has been fetched at least once
//   ackBase  the thread's last_seq as last reported by the API: history up to it is
//            available to this client on demand, so acks may cover it
//   acked    the highest seq acked on the socket
function newThread(id) {
  return {
    id,
    name: '',
    created_by: '',
    members: [],
    last_seq: 0,
    unread: 0,
    activity: 0,
    placeholder: true,
    touched: Date.now(),
    preview: null, // {seq, sender_id, body}
    msgs: new Map(),
    ids: new Set(),
    loaded: false,
    loading: false,
    lowSeq: 1,
    historyDone: false,
    loadingOlder: false,
    ackBase: 0,
    acked: 0,
    readSent: 0,
    syncId: null,
    typing: new Map(), // user id -> expiry (ms)
    membersCheckedAt: 0,
    draft: '', // composer text kept while another thread is shown
  };
}

const currentThread = () => (S.openId ? S.threads.get(S.openId) || null : null);
const isOpenAndVisible = (id) => id === S.openId && isPageVisible();

function memberName(t, userId) {
  if (S.me && userId === S.me.id) return S.me.username;
  const m = t.members.find((u) => u.id === userId);
  return m ? m.username : '';
}

// highContig is the highest seq such that every seq from lowSeq up to it is held: the
// "highest seq held" that sync asks after.
function highContig(t) {
  let s = t.lowSeq - 1;
  while (t.msgs.has(s + 1)) s++;
  return s;
}

function maxHeld(t) {
  let m = 0;
  for (const s of t.msgs.keys()) if (s > m) m = s;
  return m;
}

const hasOlder = (t) => t.loaded && !t.historyDone && t.lowSeq > 1;

// ---------------------------------------------------------------------------------------
// HTTP API

class ApiError extends Error {
  constructor(status, code, message, details, retryAfter) {
    super(message || code);
    this.status = status;
    this.code = code;
    this.details = details || null;
    this.retryAfter = retryAfter || null;
    this.handled = false; // true when already acted on (a 401 returned to the login screen)
  }
}

// api calls the JSON API. A 401 (unless opts.auth is false, as for login itself) ends the
// session and returns to the login screen; the thrown error is then marked handled.
async function api(method, path, body, opts = {}) {
  const s0 = S;
  const init = { method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(API + path, init);
  } catch {
    throw new ApiError(0, 'network_error', 'Cannot reach the server. Check your connection.');
  }
  const text = res.status === 204 ? '' : await res.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!res.ok) {
    const e = (data && data.error) || {};
    const err = new ApiError(res.status, e.code || `http_${res.status}`,
      e.message || `${res.status} ${res.statusText}`, e.details, res.headers.get('Retry-After'));
    if (res.status === 401 && opts.auth !== false) {
      err.handled = true;
      // A request still in flight when its session ended may be answered after the user
      // has logged in again: that 401 is about the old session, not the new one.
      if (S === s0 && S.me) toLogin('Your session has ended. Please log in again.');
    }
    throw err;
  }
  return data;
}

const threadPath = (id) => `/threads/${encodeURIComponent(id)}`;

function errorText(err) {
  if (!err) return 'Something went wrong.';
  if (err.code === 'unknown_user') {
    const names = (err.details && Array.isArray(err.details.usernames)) ? err.details.usernames : [];
    if (names.length) return `Unknown user${names.length > 1 ? 's' : ''}: ${names.join(', ')}`;
  }
  if (err.code === 'rate_limited' && err.retryAfter) {
    return `${err.message} (try again in ${err.retryAfter} s)`;
  }
  return err.message || String(err);
}

function report(err) {
  if (err && err.handled) return;
  if (!(err instanceof ApiError)) console.error(err); // API errors are expected answers
  showError(errorText(err));
}

function quiet(err) {
  if (err && !err.handled) console.warn(err);
}

// ---------------------------------------------------------------------------------------
// UI elements and global error / announcements

const ui = {};

function bindUI() {
  for (const id of [
    'error-banner', 'error', 'error-dismiss', 'login-view', 'app-view', 'login-form',
    'login-username', 'login-password', 'login-submit', 'register-submit', 'logout',
    'current-user', 'new-thread-form', 'new-thread-name', 'new-thread-members',
    'new-thread-submit', 'thread-list', 'thread-list-empty', 'no-thread', 'thread-pane',
    'back', 'thread-title', 'thread-members', 'messages', 'history-row', 'load-older',
    'history-note', 'typing', 'composer-form', 'composer', 'send', 'host-footer',
    'live-region',
  ]) {
    ui[id.replace(/-([a-z])/g, (_, c) => c.toUpperCase())] = $(id);
  }
  // Only element children in the keyed lists, so reconcile's order is exact.
  for (const list of [ui.messages, ui.threadList, ui.threadMembers]) {
    for (const n of [...list.childNodes]) if (n.nodeType !== Node.ELEMENT_NODE) n.remove();
  }
}

function showError(text) {
  setText(ui.error, text);
  ui.errorBanner.hidden = !text;
}

function clearError() {
  showError('');
}

function announce(text) {
  const p = h('p', { text });
  ui.liveRegion.append(p);
  while (ui.liveRegion.childElementCount > 3) ui.liveRegion.firstElementChild.remove();
}

function setFooter(state, text) {
  ui.hostFooter.dataset.state = state;
  setText(ui.hostFooter, text);
}

// ---------------------------------------------------------------------------------------
// Screens and session

function showScreen(name) {
  document.body.dataset.screen = name;
  ui.loginView.hidden = name !== 'login';
  ui.appView.hidden = name !== 'app';
}

function teardown() {
  dropSocket(false);
  for (const id of S.timers) {
    clearTimeout(id);
    clearInterval(id);
  }
  S.timers.clear();
}

// toLogin ends this login locally (server-side logout is the caller's business) and
// shows the login screen, with message in #error if given.
function toLogin(message) {
  teardown();
  S = newState();
  ui.threadList.replaceChildren();
  for (const n of [...ui.messages.children]) if (n !== ui.historyRow) n.remove();
  ui.threadMembers.replaceChildren();
  setText(ui.typing, '');
  setText(ui.currentUser, '');
  ui.composer.value = '';
  document.body.classList.remove('thread-open');
  ui.threadPane.hidden = true;
  ui.noThread.hidden = false;
  document.title = 'Switchboard';
  ui.loginPassword.value = '';
  showScreen('login');
  showError(message || '');
  ui.loginUsername.focus();
}

async function startSession(user) {
  S.me = user;
  const s0 = S;
  setText(ui.currentUser, user.username);
  showScreen('app');
  setFooter('connecting', 'connecting…');
  renderAll();
  try {
    await refreshThreads();
  } catch (err) {
    report(err);
  }
  if (S !== s0) return;
  connect();
  every(() => refreshThreads().catch(quiet), THREADS_REFRESH_MS);
  every(() => refreshPresence().catch(quiet), PRESENCE_MS);
}

function credentials() {
  const username = ui.loginUsername.value.trim();
  const password = ui.loginPassword.value;
  if (!username || !password) {
    showError('Enter a username and a password.');
    (username ? ui.loginPassword : ui.loginUsername).focus();
    return null;
  }
  return { username, password };
}

async function withBusy(buttons, fn) {
  for (const b of buttons) b.disabled = true;
  try {
    return await fn();
  } finally {
    for (const b of buttons) b.disabled = false;
  }
}

async function doLogin(creds) {
  const data = await api('POST', '/auth/login', creds, { auth: false });
  clearError();
  ui.loginPassword.value = '';
  await startSession(data.user);
}

function onLoginSubmit(ev) {
  ev.preventDefault();
  const creds = credentials();
  if (!creds) return;
  withBusy([ui.loginSubmit, ui.registerSubmit], () => doLogin(creds)).catch(report);
}

function onRegister() {
  const creds = credentials();
  if (!creds) return;
  withBusy([ui.loginSubmit, ui.registerSubmit], async () => {
    await api('POST', '/auth/register', creds, { auth: false });
    await doLogin(creds);
  }).catch(report);
}

async function onLogout() {
  ui.logout.disabled = true;
  // Close our socket first, so the server's 4001 for this session finds nothing to say.
  S.closing = true;
  dropSocket(false);
  let message = '';
  try {
    await api('POST', '/auth/logout', undefined, { auth: false });
  } catch (err) {
    if (err.status !== 401) {
      quiet(err);
      message = `Logged out here, but the server did not confirm it: ${errorText(err)}`;
    }
  } finally {
    ui.logout.disabled = false;
  }
  toLogin(message);
}

// ---------------------------------------------------------------------------------------
// Threads

// upsertThread merges a thread from the API into the model. The API's unread count wins
// unless this client already holds newer messages than the answer describes.
function upsertThread(raw) {
  let t = S.threads.get(raw.id);
  if (!t) {
    t = newThread(raw.id);
    S.threads.set(raw.id, t);
  }
  t.placeholder = false;
  t.touched = Date.now();
  if (typeof raw.name === 'string') t.name = raw.name;
  if (typeof raw.created_by === 'string') t.created_by = raw.created_by;
  if (Array.isArray(raw.members)) t.members = raw.members;
  const lastSeq = Number(raw.last_seq) || 0;
  if (lastSeq >= t.last_seq) {
    t.last_seq = lastSeq;
    t.unread = Number(raw.unread) || 0;
  }
  if (lastSeq > t.ackBase) {
    t.ackBase = lastSeq;
    markAckDirty(t.id);
  }
  const act = Date.parse(raw.last_activity_at || raw.created_at || '') || 0;
  if (act > t.activity) t.activity = act;
  if (isOpenAndVisible(t.id) && t.unread) {
    t.unread = 0;
    scheduleRead();
  }
  invalidate('threads');
  if (t.id === S.openId) {
    invalidate('header');
    invalidate('messages'); // sender names may have become known
  }
  return t;
}

function dropThread(id) {
  const t = S.threads.get(id);
  S.threads.delete(id);
  for (const [cmid, p] of S.pending) if (p.threadId === id) S.pending.delete(cmid);
  if (S.openId === id) {
    closeThread();
    showError(`You are no longer a member of “${(t && t.name) || 'this conversation'}”.`);
  }
  invalidate('threads');
}

async function refreshThreads() {
  const s0 = S;
  const started = Date.now();
  const data = await api('GET', '/threads');
  if (S !== s0) return;
  const seen = new Set();
  for (const raw of (data && data.threads) || []) {
    upsertThread(raw);
    seen.add(raw.id);
  }
  for (const [id, t] of S.threads) if (!seen.has(id) && t.touched < started) dropThread(id);
  flushRender();
}

// fetchThread loads one thread (a message arrived for a thread we did not know, or from
// a sender who is not among its known members). Concurrent calls share one request.
function fetchThread(id) {
  if (S.fetching.has(id)) return S.fetching.get(id);
  const s0 = S;
  const p = api('GET', threadPath(id))
    .then((data) => {
      if (S === s0 && data && data.thread) upsertThread(data.thread);
    })
    .catch((err) => {
      if (S === s0 && err.status === 404) dropThread(id);
      else quiet(err);
    })
    .finally(() => s0.fetching.delete(id));
  S.fetching.set(id, p);
  return p;
}

function onCreateThread(ev) {
  ev.preventDefault();
  const name = ui.newThreadName.value.trim();
  if (!name) {
    showError('Give the conversation a name.');
    ui.newThreadName.focus();
    return;
  }
  const me = S.me ? S.me.username : '';
  const members = [...new Set(ui.newThreadMembers.value.split(/[\s,;]+/)
    .map((u) => u.trim().toLowerCase())
    .filter((u) => u && u !== me))];
  const s0 = S;
  withBusy([ui.newThreadSubmit], async () => {
    const data = await api('POST', '/threads', { name, members });
    if (S !== s0) return;
    clearError();
    ui.newThreadName.value = '';
    ui.newThreadMembers.value = '';
    const t = upsertThread(data.thread);
    openThread(t.id);
  }).catch((err) => {
    report(err);
    if (err.code === 'unknown_user') ui.newThreadMembers.focus();
  });
}

// ---------------------------------------------------------------------------------------
// Messages held by the client

// ingest adds one message to its thread unless it is already held (dedupe by message.id,
// and by seq since seq is unique in a thread). how: live | catchup | history | sync | sent.
// Returns true when the message was new to this client.
function ingest(m, how) {
  if (!m || typeof m.thread_id !== 'string' || !Number.isInteger(m.seq) || m.seq < 1) return false;
  let t = S.threads.get(m.thread_id);
  if (!t) {
    t = newThread(m.thread_id);
    S.threads.set(t.id, t);
    fetchThread(t.id);
  }
  t.touched = Date.now();
  // An own message that arrives as `message` (another device, or our send stored just
  // before a reconnect) settles the pending send with that client_msg_id.
  if (S.me && m.sender_id === S.me.id && m.client_msg_id && S.pending.has(m.client_msg_id)) {
    settlePending(m.client_msg_id);
  }
  if (t.ids.has(m.id) || t.msgs.has(m.seq)) return false;
  t.ids.add(m.id);
  t.msgs.set(m.seq, m);
  if (m.seq > t.last_seq) {
    t.last_seq = m.seq;
    if (S.me && m.sender_id !== S.me.id && !isOpenAndVisible(t.id)) t.unread++;
  }
  const at = Date.parse(m.created_at || '') || 0;
  if (at > t.activity) t.activity = at;
  if (!t.preview || m.seq >= t.preview.seq) {
    t.preview = { seq: m.seq, sender_id: m.sender_id, body: m.body };
  }
  if (t.typing.delete(m.sender_id) && t.id === S.openId) invalidate('typing');
  if (!t.placeholder && m.sender_id && !memberName(t, m.sender_id)
    && Date.now() - t.membersCheckedAt > 10000) {
    // A sender we do not know: a member who joined since we last looked.
    t.membersCheckedAt = Date.now();
    fetchThread(t.id);
  }
  if (isOpenAndVisible(t.id)) scheduleRead();
  markAckDirty(t.id);
  invalidate('threads');
  if (t.id === S.openId) invalidate('messages');
  return true;
}

function onMessageFrame(m) {
  const live = S.synced;
  if (!ingest(m, live ? 'live' : 'catchup')) return;
  if (live && S.me && m.sender_id !== S.me.id) {
    const t = S.threads.get(m.thread_id);
    const who = memberName(t, m.sender_id) || 'someone';
    const body = m.body.length > 140 ? `${m.body.slice(0, 140)}…` : m.body;
    announce(`${who} in ${t.name || 'a conversation'}: ${body}`);
  }
}

// Acks: after each received batch, tell the server the highest contiguous seq held per
// thread ("held" counts history up to the API's last_seq, fetchable at any time).
function markAckDirty(id) {
  S.ackDirty.add(id);
  if (!S.ackTimer) S.ackTimer = later(flushAcks, 50);
}

function flushAcks() {
  S.ackTimer = 0;
  if (!wsReady()) return; // kept dirty; flushed again after the next hello
  for (const id of S.ackDirty) {
    const t = S.threads.get(id);
    if (!t) continue;
    let seq = Math.max(t.ackBase, t.acked);
    while (t.msgs.has(seq + 1)) seq++;
    if (seq > t.acked) {
      wsSend({ type: 'ack', thread_id: id, seq });
      t.acked = seq;
    }
  }
  S.ackDirty.clear();
}

// Read marks: while a thread is open and the page visible, mark read up to the newest
// message held.
function scheduleRead() {
  if (!S.readTimer) S.readTimer = later(flushRead, 300);
}

function flushRead() {
  S.readTimer = 0;
  const t = currentThread();
  if (!t || !isPageVisible() || t.placeholder) return;
  const seq = Math.max(maxHeld(t), t.loaded ? t.last_seq : 0);
  if (t.unread) {
    t.unread = 0;
    invalidate('threads');
  }
  if (seq < 1 || seq <= t.readSent) return;
  const s0 = S;
  const before = t.readSent;
  t.readSent = seq;
  api('POST', `${threadPath(t.id)}/read`, { seq }).catch((err) => {
    if (S !== s0) return;
    if (t.readSent === seq) t.readSent = before;
    if (err.status === 404) dropThread(t.id);
    else quiet(err);
  });
}

// ---------------------------------------------------------------------------------------
// Opening a thread, history and scroll-back

function openThread(id) {
  const t = S.threads.get(id);
  if (!t) return;
  const switching = S.openId !== id;
  if (switching) saveDraft();
  S.openId = id;
  document.body.classList.add('thread-open');
  ui.noThread.hidden = true;
  ui.threadPane.hidden = false;
  if (switching) {
    ui.composer.value = t.draft;
    S.lastTypingSent = 0;
    setText(ui.typing, '');
  }
  if (isPageVisible()) t.unread = 0;
  renderAll();
  renderMessages('bottom');
  if (!t.loaded) {
    loadNewest(t).catch(report);
  } else {
    scheduleRead();
    requestSync(t);
    fetchThread(t.id);
  }
  refreshPresence().catch(quiet);
  ui.composer.focus();
}

function saveDraft() {
  const t = currentThread();
  if (t) t.draft = ui.composer.value;
}

function closeThread() {
  saveDraft();
  ui.composer.value = '';
  const id = S.openId;
  S.openId = null;
  document.body.classList.remove('thread-open');
  ui.threadPane.hidden = true;
  ui.noThread.hidden = false;
  renderAll();
  const item = id && ui.threadList.querySelector(`li[data-thread-id="${CSS.escape(id)}"] .thread-open`);
  if (item) item.focus();
}

function pageBounds(messages) {
  let lo = Infinity;
  for (const m of messages) if (Number.isInteger(m.seq) && m.seq < lo) lo = m.seq;
  return lo;
}

// loadNewest refreshes the thread and fetches its newest page:
// GET /threads/{id}/messages?before_seq=<last_seq+1>&limit=50.
async function loadNewest(t) {
  if (t.loading) return;
  const s0 = S;
  t.loading = true;
  if (t.id === S.openId) renderMessages('bottom');
  try {
    const td = await api('GET', threadPath(t.id));
    if (S !== s0) return;
    upsertThread(td.thread);
    let low = t.last_seq + 1;
    if (t.last_seq > 0) {
      const data = await api('GET',
        `${threadPath(t.id)}/messages?before_seq=${t.last_seq + 1}&limit=${PAGE_LIMIT}`);
      if (S !== s0) return;
      const msgs = (data && data.messages) || [];
      for (const m of msgs) ingest(m, 'history');
      low = Math.min(low, pageBounds(msgs));
      if (!data.has_more) t.historyDone = true;
    } else {
      t.historyDone = true;
    }
    while (t.msgs.has(low - 1)) low--;
    t.lowSeq = Math.max(1, low);
    t.loaded = true;
  } catch (err) {
    if (S === s0 && err.status === 404) {
      dropThread(t.id);
      return;
    }
    throw err;
  } finally {
    t.loading = false;
  }
  if (S !== s0 || t.id !== S.openId) return;
  renderAll();
  renderMessages('bottom');
  scheduleRead();
  requestSync(t);
  fillViewport(t);
}

// loadOlder fetches the page before the oldest message shown and keeps the scroll
// position of what the user is looking at.
async function loadOlder(t) {
  if (!hasOlder(t) || t.loadingOlder) return;
  const s0 = S;
  t.loadingOlder = true;
  if (t.id === S.openId) renderHistoryRow(t);
  try {
    const data = await api('GET',
      `${threadPath(t.id)}/messages?before_seq=${t.lowSeq}&limit=${PAGE_LIMIT}`);
    if (S !== s0) return;
    const msgs = (data && data.messages) || [];
    for (const m of msgs) ingest(m, 'history');
    let low = Math.min(t.lowSeq, pageBounds(msgs));
    while (t.msgs.has(low - 1)) low--;
    t.lowSeq = Math.max(1, low);
    if (!data.has_more || msgs.length === 0) t.historyDone = true;
  } finally {
    t.loadingOlder = false;
  }
  if (t.id !== S.openId) return;
  renderMessages('keep');
  fillViewport(t);
}

// fillViewport keeps loading older pages until the list can scroll (or history ends), so
// scrolling to the top is always possible.
function fillViewport(t) {
  if (t.id !== S.openId || !hasOlder(t)) return;
  if (ui.messages.scrollHeight <= ui.messages.clientHeight + NEAR_TOP_PX) {
    loadOlder(t).catch(report);
  }
}

function onMessagesScroll() {
  const t = currentThread();
  if (t && ui.messages.scrollTop < NEAR_TOP_PX && hasOlder(t)) loadOlder(t).catch(report);
}

// ---------------------------------------------------------------------------------------
// Sending

const isSendKey = (ev) => ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing
  && !ev.altKey && !ev.ctrlKey && !ev.metaKey;

function onComposerKeydown(ev) {
  if (isSendKey(ev)) {
    ev.preventDefault();
    sendFromComposer();
  }
}

// Browsers skip keypress after a keydown whose default was prevented, but synthesized
// input (DevTools protocol "char" events, as chromedp sends) does not: never let the
// Enter that sent a message insert a newline into the emptied composer.
function onComposerKeypress(ev) {
  if (isSendKey(ev)) ev.preventDefault();
}

function onComposerInput() {
  const t = currentThread();
  if (!t || !ui.composer.value.trim() || !wsReady()) return;
  const now = Date.now();
  if (now - S.lastTypingSent < TYPING_SEND_MS) return;
  S.lastTypingSent = now;
  wsSend({ type: 'typing', thread_id: t.id });
}

function sendFromComposer() {
  const t = currentThread();
  if (!t) return;
  // Blank lines around the text are dropped; indentation and inner newlines are kept.
  const body = ui.composer.value.replace(/^(?:[ \t]*\r?\n)+/, '').trimEnd();
  if (!body) return;
  const n = byteLength(body);
  if (n > MAX_BODY_BYTES) {
    showError(`That message is too long: ${n} bytes of text, the limit is ${MAX_BODY_BYTES}.`);
    return;
  }
  if (body.includes('\u0000')) {
    showError('Messages cannot contain NUL characters.');
    return;
  }
  ui.composer.value = '';
  const p = {
    cmid: uuid(), threadId: t.id, body, status: 'queued', error: '', created: new Date(), timer: 0,
  };
  S.pending.set(p.cmid, p);
  transmit(p);
  renderMessages('bottom');
}

// transmit sends a pending message: over the socket when it is up (else it stays queued
// and goes after the next hello, with the same client_msg_id, which the server treats
// idempotently); a frame too big for the socket's 16 KiB limit goes over HTTP instead.
function transmit(p) {
  p.timer = cancel(p.timer);
  p.error = '';
  const frame = JSON.stringify({
    type: 'send', thread_id: p.threadId, client_msg_id: p.cmid, body: p.body,
  });
  if (byteLength(frame) > MAX_FRAME_BYTES - 256) {
    sendOverHTTP(p);
    return;
  }
  if (!wsReady()) {
    p.status = 'queued';
    invalidate('messages');
    return;
  }
  S.ws.send(frame);
  p.status = 'sending';
  p.timer = later(() => {
    if (S.pending.get(p.cmid) === p && p.status === 'sending') {
      p.status = 'failed';
      p.error = 'no answer from the server';
      invalidate('messages');
    }
  }, SEND_TIMEOUT_MS);
  invalidate('messages');
}

async function sendOverHTTP(p) {
  const s0 = S;
  p.status = 'sending';
  invalidate('messages');
  try {
    const data = await api('POST', `${threadPath(p.threadId)}/messages`,
      { client_msg_id: p.cmid, body: p.body });
    if (S !== s0) return;
    settlePending(p.cmid);
    ingest(data.message, 'sent');
  } catch (err) {
    if (S !== s0 || S.pending.get(p.cmid) !== p) return;
    p.status = 'failed';
    p.error = errorText(err);
    invalidate('messages');
  }
}

function settlePending(cmid) {
  const p = S.pending.get(cmid);
  if (!p) return;
  cancel(p.timer);
  S.pending.delete(cmid);
  if (p.threadId === S.openId) invalidate('messages');
}

function retryPending(cmid) {
  const p = S.pending.get(cmid);
  if (!p || p.status !== 'failed') return;
  p.status = 'queued';
  transmit(p);
}

function resendQueued() {
  for (const p of S.pending.values()) if (p.status === 'queued') transmit(p);
}

const sendErrorText = {
  not_member: 'you are not a member of this conversation',
  too_large: 'message too long',
  rate_limited: 'sending too fast',
  unavailable: 'server unavailable',
  invalid_request: 'rejected by the server',
};

// ---------------------------------------------------------------------------------------
// WebSocket

const wsReady = () => !!(S.ws && S.ws.readyState === WebSocket.OPEN && S.hello);

function wsSend(frame) {
  if (!S.ws || S.ws.readyState !== WebSocket.OPEN) return false;
  S.ws.send(JSON.stringify(frame));
  return true;
}

function connect() {
  if (!S.me || S.ws || S.closing) return;
  S.reconnectTimer = cancel(S.reconnectTimer);
  const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
  let ws;
  try {
    ws = new WebSocket(url);
  } catch (err) {
    console.warn(err);
    scheduleReconnect(1006, false);
    return;
  }
  S.ws = ws;
  S.hello = null;
  S.synced = false;
  setFooter(S.everConnected ? 'reconnecting' : 'connecting',
    S.everConnected ? 'reconnecting…' : 'connecting…');
  S.connectTimer = later(() => {
    if (S.ws === ws && !S.hello) dropSocket(true);
  }, CONNECT_TIMEOUT_MS);
  ws.onmessage = (ev) => {
    if (S.ws === ws) onFrame(ev.data);
  };
  ws.onclose = (ev) => {
    if (S.ws === ws) onSocketClosed(ev.code);
  };
  ws.onerror = () => {}; // a close event always follows
}

// dropSocket abandons the current socket without waiting for its close handshake (a
// half-open connection may never answer) and, if reconnect is set, schedules a new one.
function dropSocket(reconnect) {
  const ws = S.ws;
  if (!ws) return;
  ws.onmessage = null;
  ws.onclose = null;
  try {
    ws.close(1000);
  } catch {
    // already closing
  }
  onSocketClosed(reconnect ? 1006 : 1000, !reconnect);
}

function onSocketClosed(code, final = false) {
  const hadHello = !!S.hello;
  const lived = S.connectedAt ? Date.now() - S.connectedAt : 0;
  S.ws = null;
  S.hello = null;
  S.synced = false;
  S.connectedAt = 0;
  S.pingTimer = cancel(S.pingTimer);
  S.pongTimer = cancel(S.pongTimer);
  S.connectTimer = cancel(S.connectTimer);
  for (const t of S.threads.values()) t.syncId = null;
  for (const p of S.pending.values()) {
    if (p.status === 'sending' && p.timer) {
      p.timer = cancel(p.timer);
      p.status = 'queued';
    }
  }
  invalidate('messages');
  if (final || !S.me || S.closing) return;
  if (code === 4001) {
    toLogin('Your session has ended. Please log in again.');
    return;
  }
  if (hadHello && lived >= STABLE_CONN_MS) S.attempt = 0;
  if (!hadHello) {
    // The upgrade may have been refused with 401 (the browser only reports 1006):
    // ask the API, whose 401 returns to the login screen.
    api('GET', '/me').catch(quiet);
  }
  scheduleReconnect(code);
}

// scheduleReconnect waits with exponential backoff and full jitter (a random delay up to
// min(10 s, 0.5 s * 2^attempt)); a host that is shutting down (1012) is left almost at
// once, with a little jitter so its sockets do not return as one herd.
function scheduleReconnect(code) {
  let delay;
  if (code === 1012) {
    delay = 100 + Math.random() * 900;
  } else {
    delay = Math.random() * Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** S.attempt);
    S.attempt = Math.min(S.attempt + 1, 16);
  }
  setFooter('reconnecting', 'reconnecting…');
  S.reconnectTimer = cancel(S.reconnectTimer);
  S.reconnectTimer = later(() => {
    S.reconnectTimer = 0;
    connect();
  }, delay);
}

function reconnectNow() {
  if (S.me && !S.ws) {
    S.reconnectTimer = cancel(S.reconnectTimer);
    connect();
  }
}

function onFrame(data) {
  S.pongTimer = cancel(S.pongTimer); // any frame proves the link is alive
  let f;
  try {
    f = JSON.parse(data);
  } catch {
    console.warn('bad frame from server');
    return;
  }
  if (!f || typeof f !== 'object') return;
  switch (f.type) {
    case 'hello': onHello(f); break;
    case 'message': onMessageFrame(f.message); break;
    case 'synced': onSynced(); break;
    case 'sent': onSent(f); break;
    case 'sync_result': onSyncResult(f); break;
    case 'typing': onTyping(f); break;
    case 'error': onErrorFrame(f); break;
    case 'pong': break;
    default: break;
  }
}

function onHello(f) {
  S.connectTimer = cancel(S.connectTimer);
  S.hello = { host_id: String(f.host_id || ''), conn_id: String(f.conn_id || '') };
  S.connectedAt = Date.now();
  S.synced = false;
  setFooter('connected', `connected to host ${S.hello.host_id} · conn ${S.hello.conn_id}`);
  S.pingTimer = every(() => {
    if (!wsSend({ type: 'ping' })) return;
    if (!S.pongTimer) S.pongTimer = later(() => dropSocket(true), PONG_TIMEOUT_MS);
  }, PING_MS);
  const reconnected = S.everConnected;
  S.everConnected = true;
  resendQueued();
  for (const id of S.threads.keys()) markAckDirty(id);
  if (reconnected) refreshThreads().catch(quiet);
}

function onSynced() {
  S.synced = true;
  flushAcks();
  const t = currentThread();
  if (t && t.loaded) requestSync(t);
}

function onSent(f) {
  if (typeof f.client_msg_id === 'string') settlePending(f.client_msg_id);
  if (f.message) ingest(f.message, 'sent');
}

// requestSync asks the socket for the open thread's messages after the highest
// contiguous seq held; onSyncResult pages on while has_more.
function requestSync(t) {
  if (!wsReady() || !t.loaded || t.syncId) return;
  t.syncId = `sync-${uuid()}`;
  wsSend({
    type: 'sync', id: t.syncId, thread_id: t.id, after_seq: highContig(t), limit: SYNC_LIMIT,
  });
}

function onSyncResult(f) {
  const t = S.threads.get(f.thread_id);
  if (!t) return;
  t.syncId = null;
  const msgs = Array.isArray(f.messages) ? f.messages : [];
  for (const m of msgs) ingest(m, 'sync');
  if (f.has_more && msgs.length) requestSync(t);
}

function onTyping(f) {
  if (!S.me || f.user_id === S.me.id) return;
  const t = S.threads.get(f.thread_id);
  if (!t) return;
  t.typing.set(f.user_id, Date.now() + TYPING_SHOW_MS);
  if (t.id === S.openId) invalidate('typing');
}

function onErrorFrame(f) {
  const p = S.pending.get(f.ref);
  if (p) {
    p.timer = cancel(p.timer);
    p.status = 'failed';
    p.error = f.message || sendErrorText[f.code] || f.code || 'error';
    invalidate('messages');
    return;
  }
  for (const t of S.threads.values()) {
    if (t.syncId && t.syncId === f.ref) {
      t.syncId = null;
      if (f.code === 'not_member') dropThread(t.id);
      break;
    }
  }
  console.warn('server error frame', f.code, f.message);
}

// ---------------------------------------------------------------------------------------
// Presence

async function refreshPresence() {
  const t = currentThread();
  if (!t || !t.members.length || !isPageVisible()) return;
  const s0 = S;
  const ids = t.members.slice(0, PRESENCE_MAX_IDS).map((m) => m.id);
  const qs = ids.map((id) => `user_id=${encodeURIComponent(id)}`).join('&');
  const data = await api('GET', `/presence?${qs}`);
  if (S !== s0) return;
  for (const id of ids) S.presence.set(id, false);
  for (const p of (data && data.presence) || []) S.presence.set(p.user_id, !!p.online);
  if (S.openId === t.id) renderMembers(t);
}

// ---------------------------------------------------------------------------------------
// Rendering

function invalidate(what) {
  S.dirty[what] = true;
  if (!S.renderTimer) S.renderTimer = later(flushRender, 16);
}

function flushRender() {
  S.renderTimer = cancel(S.renderTimer);
  const d = S.dirty;
  S.dirty = { threads: false, messages: false, header: false, typing: false };
  if (d.threads) renderThreadList();
  if (d.header) renderHeader();
  if (d.messages) renderMessages('auto');
  if (d.typing) renderTyping();
}

function renderAll() {
  renderThreadList();
  renderHeader();
  renderTyping();
  ui.composer.disabled = !S.openId;
  ui.send.disabled = !S.openId;
}

// reconcile makes list's keyed children (after the node `after`) match items in order,
// reusing nodes by key so focus and state survive re-renders.
function reconcile(list, after, items, keyOf, create, update) {
  const active = document.activeElement;
  const existing = new Map();
  for (const n of list.children) if (n.dataset.key) existing.set(n.dataset.key, n);
  let prev = after;
  for (const item of items) {
    const key = keyOf(item);
    let n = existing.get(key);
    if (n) existing.delete(key);
    else {
      n = create(item);
      n.dataset.key = key;
    }
    update(n, item);
    const want = prev ? prev.nextSibling : list.firstChild;
    if (n !== want) list.insertBefore(n, want);
    prev = n;
  }
  for (const n of existing.values()) n.remove();
  if (active && active !== document.activeElement && list.contains(active)) {
    active.focus({ preventScroll: true });
  }
}

function sortedThreads() {
  return [...S.threads.values()].sort((a, b) => (b.activity - a.activity)
    || (b.last_seq - a.last_seq) || a.name.localeCompare(b.name) || a.id.localeCompare(b.id));
}

function createThreadItem() {
  const li = h('li', { class: 'thread-item' });
  li.append(h('button', { type: 'button', class: 'thread-open' },
    h('span', { class: 'thread-line' },
      h('span', { class: 'thread-name' }),
      h('time', { class: 'thread-time' })),
    h('span', { class: 'thread-line' },
      h('span', { class: 'thread-preview' }),
      h('span', { class: 'unread' }))));
  return li;
}

function updateThreadItem(li, t) {
  li.dataset.threadId = t.id;
  const open = t.id === S.openId;
  if (open) li.setAttribute('aria-current', 'true');
  else li.removeAttribute('aria-current');
  li.classList.toggle('has-unread', t.unread > 0);
  setText(li.querySelector('.thread-name'), t.placeholder ? 'Loading…' : (t.name || 'Untitled'));
  const time = li.querySelector('.thread-time');
  if (t.activity) {
    const iso = new Date(t.activity).toISOString();
    if (time.getAttribute('datetime') !== iso) time.setAttribute('datetime', iso);
    setText(time, formatTime(t.activity));
  } else setText(time, '');
  let preview;
  if (t.preview) {
    const who = memberName(t, t.preview.sender_id);
    preview = `${who ? `${who}: ` : ''}${t.preview.body.replace(/\s+/g, ' ')}`;
  } else {
    preview = t.members.map((m) => m.username).join(', ');
  }
  setText(li.querySelector('.thread-preview'), preview);
  const badge = li.querySelector('.unread');
  setText(badge, String(t.unread));
  badge.hidden = t.unread <= 0;
  const label = `${t.unread} unread`;
  if (badge.getAttribute('aria-label') !== label) badge.setAttribute('aria-label', label);
}

function renderThreadList() {
  const threads = sortedThreads();
  reconcile(ui.threadList, null, threads, (t) => t.id, createThreadItem, updateThreadItem);
  ui.threadListEmpty.hidden = threads.length > 0;
  let total = 0;
  for (const t of threads) total += t.unread;
  document.title = total > 0 ? `(${total}) Switchboard` : 'Switchboard';
}

function renderHeader() {
  const t = currentThread();
  ui.composer.disabled = !t;
  ui.send.disabled = !t;
  if (!t) return;
  setText(ui.threadTitle, t.placeholder ? 'Loading…' : (t.name || 'Untitled'));
  renderMembers(t);
}

function renderMembers(t) {
  const members = [...t.members].sort((a, b) => a.username.localeCompare(b.username));
  reconcile(ui.threadMembers, null, members, (m) => m.id, () => h('li', { class: 'member' },
    h('span', { class: 'dot', 'aria-hidden': 'true' }),
    h('span', { class: 'member-name' }),
    h('span', { class: 'visually-hidden member-state' })), (li, m) => {
    const online = S.presence.get(m.id) === true;
    li.dataset.userId = m.id;
    li.dataset.online = String(online);
    setText(li.querySelector('.member-name'),
      S.me && m.id === S.me.id ? `${m.username} (you)` : m.username);
    setText(li.querySelector('.member-state'), online ? ' (online)' : ' (offline)');
    li.title = online ? 'online' : 'offline';
  });
}

function renderTyping() {
  S.typingTimer = cancel(S.typingTimer);
  const t = currentThread();
  if (!t) {
    setText(ui.typing, '');
    return;
  }
  const now = Date.now();
  const names = [];
  let next = Infinity;
  for (const [id, until] of t.typing) {
    if (until <= now) {
      t.typing.delete(id);
      continue;
    }
    names.push(memberName(t, id) || 'someone');
    next = Math.min(next, until);
  }
  let text = '';
  if (names.length === 1) text = `${names[0]} is typing…`;
  else if (names.length === 2) text = `${names[0]} and ${names[1]} are typing…`;
  else if (names.length > 2) text = `${names.length} people are typing…`;
  setText(ui.typing, text);
  if (next !== Infinity) S.typingTimer = later(renderTyping, next - now + 20);
}

function isNearBottom() {
  const m = ui.messages;
  return m.scrollHeight - m.scrollTop - m.clientHeight < NEAR_BOTTOM_PX;
}

function scrollToBottom() {
  ui.messages.scrollTop = ui.messages.scrollHeight;
}

function messageItems(t) {
  const items = [];
  if (t.loaded) {
    const seqs = [...t.msgs.keys()].filter((s) => s >= t.lowSeq).sort((a, b) => a - b);
    for (const s of seqs) items.push({ m: t.msgs.get(s), p: null });
  }
  for (const p of S.pending.values()) if (p.threadId === t.id) items.push({ m: null, p });
  return items;
}

// An own message keeps one key (its client_msg_id) from "sending…" to "sent", so the
// same element is updated in place.
function messageKey(item) {
  if (item.p) return `c:${item.p.cmid}`;
  const m = item.m;
  if (S.me && m.sender_id === S.me.id && m.client_msg_id) return `c:${m.client_msg_id}`;
  return `m:${m.id}`;
}

function createMessageNode() {
  return h('li', { class: 'message' },
    h('div', { class: 'meta' },
      h('span', { class: 'sender' }),
      h('time', { class: 'time' })),
    h('div', { class: 'body' }),
    h('div', { class: 'message-foot' },
      h('span', { class: 'status' }),
      h('button', { type: 'button', class: 'retry link-button', hidden: true }, 'Retry')));
}

function updateMessageNode(li, item, t) {
  const { m, p } = item;
  const own = !!p || (S.me && m.sender_id === S.me.id);
  li.classList.toggle('own', own);
  let status;
  let body;
  let created;
  let sender;
  if (m) {
    li.dataset.seq = String(m.seq);
    li.dataset.id = m.id;
    status = own ? 'sent' : '';
    body = m.body;
    created = m.created_at;
    sender = memberName(t, m.sender_id) || 'unknown user';
  } else {
    delete li.dataset.seq;
    delete li.dataset.id;
    status = p.status;
    body = p.body;
    created = p.created;
    sender = S.me ? S.me.username : '';
  }
  const cmid = p ? p.cmid : (own && m.client_msg_id) || '';
  if (cmid) li.dataset.clientMsgId = cmid;
  if (status) li.dataset.status = status;
  else delete li.dataset.status;
  li.classList.toggle('failed', status === 'failed');
  li.classList.toggle('pending', status === 'sending' || status === 'queued');
  setText(li.querySelector('.sender'), sender);
  const time = li.querySelector('.time');
  const d = new Date(created);
  if (!Number.isNaN(d.getTime())) {
    const iso = d.toISOString();
    if (time.getAttribute('datetime') !== iso) {
      time.setAttribute('datetime', iso);
      time.title = fullTime(d);
    }
    setText(time, formatTime(d));
  }
  setText(li.querySelector('.body'), body);
  let statusText = '';
  if (status === 'sent') statusText = 'sent';
  else if (status === 'sending' || status === 'queued') statusText = 'sending…';
  else if (status === 'failed') statusText = `failed: ${p.error || 'error'}`;
  setText(li.querySelector('.status'), statusText);
  const statusEl = li.querySelector('.status');
  if (status === 'queued') statusEl.title = 'waiting for the connection';
  else statusEl.removeAttribute('title');
  li.querySelector('.retry').hidden = status !== 'failed';
}

function renderHistoryRow(t) {
  const older = hasOlder(t);
  ui.loadOlder.hidden = !older || t.loadingOlder;
  let note = '';
  if (t.loading && !t.loaded) note = 'Loading messages…';
  else if (t.loadingOlder) note = 'Loading older messages…';
  else if (t.loaded && !older) note = t.msgs.size || [...S.pending.values()].some((p) => p.threadId === t.id)
    ? 'Beginning of the conversation' : 'No messages yet. Say hello!';
  setText(ui.historyNote, note);
}

// renderMessages draws the open thread. mode: 'bottom' scrolls to the newest message;
// 'keep' keeps the messages in view where they are (older ones were added above);
// 'auto' follows new messages only if the view was already at the bottom.
function renderMessages(mode = 'auto') {
  const t = currentThread();
  if (!t) return;
  const list = ui.messages;
  const wasAtBottom = isNearBottom();
  const fromBottom = list.scrollHeight - list.scrollTop;
  renderHistoryRow(t);
  reconcile(list, ui.historyRow, messageItems(t), messageKey, createMessageNode,
    (li, item) => updateMessageNode(li, item, t));
  if (mode === 'bottom' || (mode === 'auto' && wasAtBottom)) scrollToBottom();
  else if (mode === 'keep') list.scrollTop = list.scrollHeight - fromBottom;
}

// ---------------------------------------------------------------------------------------
// Wiring

function onThreadListClick(ev) {
  const li = ev.target.closest('.thread-item');
  if (li && ui.threadList.contains(li)) openThread(li.dataset.threadId);
}

function onMessagesClick(ev) {
  const btn = ev.target.closest('button.retry');
  if (!btn) return;
  const li = btn.closest('.message');
  if (li && li.dataset.clientMsgId) retryPending(li.dataset.clientMsgId);
}

function onVisibility() {
  if (!S.me) return;
  if (isPageVisible()) {
    const t = currentThread();
    if (t) {
      if (t.unread) {
        t.unread = 0;
        invalidate('threads');
      }
      scheduleRead();
      refreshPresence().catch(quiet);
    }
    reconnectNow();
  }
}

async function init() {
  bindUI();
  ui.loginForm.addEventListener('submit', onLoginSubmit);
  ui.registerSubmit.addEventListener('click', onRegister);
  ui.logout.addEventListener('click', onLogout);
  ui.errorDismiss.addEventListener('click', clearError);
  ui.newThreadForm.addEventListener('submit', onCreateThread);
  ui.threadList.addEventListener('click', onThreadListClick);
  ui.back.addEventListener('click', closeThread);
  ui.messages.addEventListener('scroll', onMessagesScroll, { passive: true });
  ui.messages.addEventListener('click', onMessagesClick);
  ui.loadOlder.addEventListener('click', () => {
    const t = currentThread();
    if (t) loadOlder(t).catch(report);
  });
  ui.composerForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    sendFromComposer();
    ui.composer.focus();
  });
  ui.composer.addEventListener('keydown', onComposerKeydown);
  ui.composer.addEventListener('keypress', onComposerKeypress);
  ui.composer.addEventListener('input', onComposerInput);
  document.addEventListener('visibilitychange', onVisibility);
  window.addEventListener('focus', onVisibility);
  window.addEventListener('online', reconnectNow);

  try {
    const data = await api('GET', '/me', undefined, { auth: false });
    await startSession(data.user);
  } catch (err) {
    toLogin(err.status === 401 ? '' : errorText(err));
  }
}

init();
