// The alarm console: the board, live over Server-Sent Events. Plain JS, no build step.
// Every alarm text is put in with textContent, never innerHTML: messages come from
// site files and devices, and must not be able to run script here.
"use strict";

const TOKEN_KEY = "facility.alarms.token";
const ROLE_RANK = { viewer: 0, crew: 1, supervisor: 2, admin: 3 };
const PRIORITY_RANK = { critical: 0, high: 1, medium: 2, low: 3 };
const STATE_WORDS = {
  active_unacknowledged: "Unacknowledged",
  active_acknowledged: "Acknowledged",
  returned_unacknowledged: "Cleared, unacknowledged",
  latched: "Latched, needs reset",
  normal: "Normal",
};
const REFRESH_DEBOUNCE_MS = 150;
const RECONNECT_MS = 5000;
const DELIVERY_POLL_MS = 5000; // failed deliveries are not transitions: asked for
const DELIVERY_LOOKBACK_MS = 24 * 3600 * 1000; // given up longer ago: old news
const DELIVERY_WORDS = { failed: "Failing, retried", abandoned: "Given up" };
const LATE_LOOKBACK_MS = 24 * 3600 * 1000; // late conditions shown on the board

const el = (id) => document.getElementById(id);

const session = {
  token: sessionStorage.getItem(TOKEN_KEY),
  me: null,
  alarms: [],
  known: new Set(), // keys on the board at the last render: new ones are highlighted
  rendered: false,
  skewMs: 0, // server clock minus ours, so ages are the server's
  selected: null,
  events: null,
  refreshTimer: null,
  reconnectTimer: null,
  deliveryTimer: null,
};

// -- talking to the API -----------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(path, options = {}) {
  const headers = { Authorization: `Bearer ${session.token}` };
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method: options.method || "GET",
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
  });
  if (response.status === 401) {
    signOut("Your token was not accepted. Sign in again.");
    throw new ApiError(401, "signed out");
  }
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new ApiError(response.status, describe(data.detail, response));
  return data;
}

function describe(detail, response) {
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) return detail.map((d) => d.msg).join("; ");
  return `${response.status} ${response.statusText}`;
}

const alarmPath = (key) => `/api/alarms/${key.split("/").map(encodeURIComponent).join("/")}`;

// -- signing in and out -----------------------------------------------------------------

async function signIn(token) {
  session.token = token;
  const me = await api("/api/me");
  sessionStorage.setItem(TOKEN_KEY, token);
  session.me = me;
  el("who").textContent = `${me.name} (${me.role})`;
  el("logout").hidden = false;
  el("login").hidden = true;
  el("board").hidden = false;
  document.body.dataset.role = me.role;
  await refresh();
  connectEvents();
  watchDeliveries();
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  disconnectEvents();
  clearInterval(session.deliveryTimer);
  el("deliveries").hidden = true;
  Object.assign(session, { token: null, me: null, alarms: [], selected: null, rendered: false });
  session.known.clear();
  el("board").hidden = true;
  el("history").hidden = true;
  el("logout").hidden = true;
  el("who").textContent = "";
  el("summary").textContent = "";
  el("login").hidden = false;
  el("login-error").textContent = message || "";
  el("token").value = "";
  el("token").focus();
  setLive("off", "offline");
  document.title = "Alarms";
}

function may(role) {
  return session.me !== null && ROLE_RANK[session.me.role] >= ROLE_RANK[role];
}

// -- live updates -------------------------------------------------------------------------

function connectEvents() {
  disconnectEvents();
  // EventSource cannot set headers, so the token goes in the query (the server keeps it
  // out of its logs).
  const events = new EventSource(`/api/events?token=${encodeURIComponent(session.token)}`);
  session.events = events;
  events.addEventListener("hello", () => {
    setLive("on", "live");
    scheduleRefresh(); // whatever happened while we were not listening
  });
  events.addEventListener("transition", (message) => {
    const transition = JSON.parse(message.data);
    scheduleRefresh();
    if (transition.key === session.selected) loadHistory(session.selected);
  });
  events.addEventListener("resync", scheduleRefresh);
  events.addEventListener("error", () => {
    if (events.readyState === EventSource.CLOSED) {
      // Refused (a revoked token) or the server gone: check, then try again later.
      setLive("off", "offline");
      session.reconnectTimer = setTimeout(reconnect, RECONNECT_MS);
    } else {
      setLive("wait", "reconnecting");
    }
  });
}

async function reconnect() {
  if (!session.token) return;
  try {
    await api("/api/me");
    connectEvents();
  } catch (error) {
    if (error.status !== 401) session.reconnectTimer = setTimeout(reconnect, RECONNECT_MS);
  }
}

function disconnectEvents() {
  clearTimeout(session.reconnectTimer);
  if (session.events) session.events.close();
  session.events = null;
}

function setLive(state, text) {
  const live = el("live");
  live.dataset.state = state;
  live.textContent = text;
}

function scheduleRefresh() {
  // A burst of transitions (a station coming back with a backlog) is one re-read.
  clearTimeout(session.refreshTimer);
  session.refreshTimer = setTimeout(refresh, REFRESH_DEBOUNCE_MS);
}

// -- the board ----------------------------------------------------------------------------

async function refresh() {
  if (!session.token) return;
  try {
    const board = await api("/api/alarms");
    session.skewMs = board.now_ms - Date.now();
    session.alarms = board.alarms.sort(byUrgency);
    render();
  } catch (error) {
    if (error.status !== 401) notice(`Could not read the alarms: ${error.message}`);
  }
  await refreshLate();
}

// -- late conditions: what happened while a station's data could not reach us ------------

async function refreshLate() {
  const since = new Date(Date.now() + session.skewMs - LATE_LOOKBACK_MS).toISOString();
  try {
    const late = await api(`/api/history?event=late&limit=50&since=${encodeURIComponent(since)}`);
    el("late").hidden = late.length === 0;
    el("late-list").replaceChildren(...late.reverse().map(lateItem));
  } catch (error) {
    // the board says what went wrong; the late list waits for the next refresh
  }
}

function lateItem(t) {
  const li = document.createElement("li");
  li.dataset.key = t.key;
  li.className = `prio-${t.priority}`;
  const from = t.since_ms === null ? "" : `${clock(t.since_ms)} – `;
  li.append(
    span("l-time", `${from}${clock(t.at_ms)}`),
    span("l-what", `${t.priority.toUpperCase()} ${t.message}`),
    span("l-key", t.key),
  );
  return li;
}

function byUrgency(a, b) {
  return (
    PRIORITY_RANK[a.priority] - PRIORITY_RANK[b.priority] ||
    (a.raised_ms ?? a.last_change_ms) - (b.raised_ms ?? b.last_change_ms) ||
    a.key.localeCompare(b.key)
  );
}

function render() {
  const isNew = (alarm) => session.rendered && !session.known.has(alarm.key);
  const rows = session.alarms.map((alarm) => alarmRow(alarm, isNew(alarm)));
  el("alarms").tBodies[0].replaceChildren(...rows);
  session.known = new Set(session.alarms.map((a) => a.key));
  session.rendered = true;
  el("empty").hidden = session.alarms.length > 0;
  el("alarms").hidden = session.alarms.length === 0;
  const unacked = session.alarms.filter(needsAck).length;
  el("summary").textContent = `${unacked} unacknowledged · ${session.alarms.length} on the board`;
  document.title = unacked ? `(${unacked}) Alarms` : "Alarms";
  tick();
}

const needsAck = (a) =>
  !a.hidden && (a.state === "active_unacknowledged" || a.state === "returned_unacknowledged");

function alarmRow(alarm, isNew) {
  const row = document.createElement("tr");
  row.dataset.key = alarm.key;
  row.dataset.state = alarm.state;
  row.className = rowClasses(alarm, isNew).join(" ");
  row.append(
    cell("Priority", priorityBadge(alarm), "c-prio"),
    cell("Alarm", describeAlarm(alarm), "c-what"),
    cell("State", stateText(alarm), "c-state"),
    cell("Age", ageText(alarm), "c-age"),
    cell("", actionButtons(alarm), "c-actions"),
  );
  row.addEventListener("click", (event) => {
    if (!event.target.closest("button")) select(alarm.key);
  });
  if (alarm.key === session.selected) row.classList.add("selected");
  return row;
}

function rowClasses(alarm, isNew) {
  const classes = ["alarm", `prio-${alarm.priority}`, `st-${alarm.state}`];
  if (needsAck(alarm)) classes.push("unacked");
  if (alarm.shelved) classes.push("shelved");
  if (alarm.out_of_service) classes.push("oos");
  if (isNew) classes.push("new");
  return classes;
}

function cell(label, content, className) {
  const td = document.createElement("td");
  td.className = className;
  if (label) td.dataset.label = label;
  td.append(...[content].flat());
  return td;
}

function priorityBadge(alarm) {
  const badge = span("prio-badge", alarm.priority.toUpperCase());
  if (!needsAck(alarm)) return badge;
  const dot = span("unacked-dot", "");
  dot.title = "unacknowledged";
  return [dot, badge];
}

function describeAlarm(alarm) {
  const message = span("message", alarm.message);
  const key = span("key", `${alarm.site} › ${alarm.station} › ${alarm.asset} · ${alarm.rule}`);
  return [message, key];
}

function stateText(alarm) {
  const parts = [span("state-word", STATE_WORDS[alarm.state] || alarm.state)];
  if (alarm.state === "active_acknowledged" && alarm.acked_by) {
    parts.push(span("state-note", `by ${alarm.acked_by}`));
  }
  if (alarm.shelved) {
    const until = clock(alarm.shelved_until_ms);
    parts.push(span("tag tag-shelved", "Shelved"));
    parts.push(span("state-note", `until ${until} by ${alarm.shelved_by}: ${alarm.shelve_reason}`));
  }
  if (alarm.out_of_service) parts.push(span("tag tag-oos", "Out of service"));
  return parts;
}

function ageText(alarm) {
  const age = span("age", "");
  age.dataset.since = String(alarm.raised_ms ?? alarm.last_change_ms);
  return age;
}

function actionButtons(alarm) {
  const buttons = [];
  const inView = !alarm.hidden;
  if (inView && needsAck(alarm) && may("crew")) {
    buttons.push(button("Acknowledge", "btn-ack", () => act(alarm, "ack", {})));
  }
  if (inView && alarm.state === "latched" && may("crew")) {
    buttons.push(button("Reset", "btn-reset", () => act(alarm, "reset", {})));
  }
  if (!alarm.shelved && may("supervisor")) {
    buttons.push(button("Shelve", "btn-shelve", () => openShelve(alarm)));
  }
  if (alarm.shelved && may("supervisor")) {
    buttons.push(button("Unshelve", "btn-unshelve", () => act(alarm, "unshelve", {})));
  }
  return buttons;
}

function span(className, text) {
  const s = document.createElement("span");
  s.className = className;
  s.textContent = text;
  return s;
}

function button(text, className, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = `btn ${className}`;
  b.textContent = text;
  b.addEventListener("click", onClick);
  return b;
}

// Ages tick every second without asking the server.
function tick() {
  const now = Date.now() + session.skewMs;
  for (const age of document.querySelectorAll(".age[data-since]")) {
    age.textContent = duration(now - Number(age.dataset.since));
  }
}

function duration(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${String(m).padStart(2, "0")}m`;
  return `${m}m ${String(s % 60).padStart(2, "0")}s`;
}

function clock(ms) {
  const at = new Date(ms);
  const sameDay = at.toDateString() === new Date().toDateString();
  const time = at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  return sameDay ? time : `${at.toLocaleDateString()} ${time}`;
}

function notice(text) {
  const n = el("notice");
  n.textContent = text;
  n.hidden = !text;
}

// -- notifications that reached nobody -----------------------------------------------------

function watchDeliveries() {
  clearInterval(session.deliveryTimer);
  if (!may("crew")) return; // the API shows deliveries to crew and up
  refreshDeliveries();
  session.deliveryTimer = setInterval(refreshDeliveries, DELIVERY_POLL_MS);
}

async function refreshDeliveries() {
  const since = new Date(Date.now() + session.skewMs - DELIVERY_LOOKBACK_MS).toISOString();
  const query = `state=failed&state=abandoned&limit=20&since=${encodeURIComponent(since)}`;
  try {
    const found = await api(`/api/notifications?${query}`);
    if (!found.notifier) clearInterval(session.deliveryTimer); // nothing is ever sent
    renderDeliveries(found.deliveries);
  } catch (error) {
    // Unreachable server or the like: the live marker says so; try again next time.
  }
}

function renderDeliveries(deliveries) {
  el("deliveries").hidden = deliveries.length === 0;
  const n = deliveries.length;
  el("deliveries-head").textContent = `${n} notification${n === 1 ? "" : "s"} not delivered`;
  el("deliveries-list").replaceChildren(...deliveries.map(deliveryItem));
}

function deliveryItem(d) {
  const li = document.createElement("li");
  li.dataset.id = String(d.id);
  li.dataset.state = d.state;
  const tries = `${d.attempts} ${d.attempts === 1 ? "try" : "tries"}`;
  const last = d.last_attempt_ms ? `, last at ${clock(d.last_attempt_ms)}` : "";
  li.append(
    span("d-state", DELIVERY_WORDS[d.state] || d.state),
    span("d-to", `${d.person} by ${d.channel}: ${d.recipient}`),
    span("d-tries", `(${tries}${last})`),
    span("d-error", d.last_error),
    span("d-what", d.title),
  );
  return li;
}

// -- actions ------------------------------------------------------------------------------

async function act(alarm, verb, body) {
  notice("");
  try {
    await api(`${alarmPath(alarm.key)}/${verb}`, { method: "POST", body });
  } catch (error) {
    if (error.status !== 401) notice(error.message);
  }
  await refresh();
}

let shelving = null;

function openShelve(alarm) {
  shelving = alarm;
  el("shelve-target").textContent = `${alarm.message} (${alarm.key})`;
  el("shelve-reason").value = "";
  el("shelve-minutes").value = "60";
  el("shelve-error").textContent = "";
  el("shelve-dialog").showModal();
  el("shelve-reason").focus();
}

async function submitShelve(event) {
  event.preventDefault();
  const reason = el("shelve-reason").value.trim();
  const minutes = Number(el("shelve-minutes").value);
  if (!reason || !(minutes > 0)) {
    el("shelve-error").textContent = "Give a reason and a number of minutes.";
    return;
  }
  try {
    await api(`${alarmPath(shelving.key)}/shelve`, { method: "POST", body: { reason, minutes } });
    el("shelve-dialog").close();
    await refresh();
  } catch (error) {
    el("shelve-error").textContent = error.message;
  }
}

// -- history ------------------------------------------------------------------------------

async function select(key) {
  session.selected = key;
  for (const row of el("alarms").tBodies[0].rows) {
    row.classList.toggle("selected", row.dataset.key === key);
  }
  el("history").hidden = false;
  el("history-title").textContent = key;
  await loadHistory(key);
}

async function loadHistory(key) {
  try {
    const transitions = await api(`${alarmPath(key)}/history?limit=50`);
    if (session.selected !== key) return;
    const items = transitions.reverse().map(historyItem);
    el("history-list").replaceChildren(...items);
  } catch (error) {
    if (error.status !== 401) el("history-list").replaceChildren(span("error", error.message));
  }
}

function historyItem(t) {
  const li = document.createElement("li");
  li.className = `ev-${t.event}`;
  const who = t.user ? ` · ${t.user}` : "";
  li.append(
    span("h-time", clock(t.at_ms)),
    span("h-event", t.event.replaceAll("_", " ") + who),
    span("h-text", t.text),
  );
  if (t.from_state !== t.to_state) {
    li.append(span("h-states", `${STATE_WORDS[t.from_state]} → ${STATE_WORDS[t.to_state]}`));
  }
  return li;
}

function closeHistory() {
  session.selected = null;
  el("history").hidden = true;
  for (const row of el("alarms").tBodies[0].rows) row.classList.remove("selected");
}

// -- start --------------------------------------------------------------------------------

function start() {
  el("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    el("login-error").textContent = "";
    try {
      await signIn(el("token").value.trim());
    } catch (error) {
      if (error.status !== 401) el("login-error").textContent = error.message;
    }
  });
  el("logout").addEventListener("click", () => signOut(""));
  el("shelve-form").addEventListener("submit", submitShelve);
  el("shelve-cancel").addEventListener("click", () => el("shelve-dialog").close());
  el("history-close").addEventListener("click", closeHistory);
  setInterval(tick, 1000);
  if (session.token) {
    signIn(session.token).catch(() => {});
  } else {
    signOut("");
  }
}

start();
