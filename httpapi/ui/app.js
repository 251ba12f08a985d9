// The cnm web view: the cluster at a glance, and its node actions live.
// It reads the API of the node that served it, as the signed-in user, and
// shows only the buttons that user's permissions allow.
"use strict";

const ui = {
  auth: sessionStorage.getItem("cnm-auth") || "",
  perms: new Set(),
  role: "",
  pending: null, // {node, action} the confirm dialog is about
  timer: 0,
  index: "", // X-Cnm-Index of the last state drawn
  base: "", // the node the page reads: "" for the one that served it
  bases: [], // every node's API, to move on to when that one does not answer
  watching: 0, // which refresh loop is current (a sign-out or sign-in starts another)
};

const $ = (sel) => document.querySelector(sel);

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("data-")) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const k of kids) e.append(k);
  return e;
}

// api sends one request; an error answer throws with its description. A
// read that finds its node not answering (the node that served the page
// died) goes to the next node, which the page then keeps to; a write is
// not sent twice.
async function api(method, path, body) {
  const tries = method === "GET" ? [ui.base, ...ui.bases.filter((b) => b !== ui.base)] : [ui.base];
  let r = null;
  let lost = null;
  for (const base of tries) {
    try {
      r = await fetch(base + path, {
        method,
        // X-Requested-With: a refused sign-in answers without the Basic
        // challenge that would make the browser prompt by itself.
        headers: { Authorization: "Basic " + ui.auth, "Content-Type": "application/json", "X-Requested-With": "XMLHttpRequest" },
        body: body === undefined ? undefined : JSON.stringify(body),
        // A node that is frozen rather than dead would hold the page.
        signal: AbortSignal.timeout(path.includes("wait=") ? 25000 : 10000),
      });
    } catch (e) {
      lost = e;
      continue;
    }
    if (base !== ui.base) {
      ui.base = base;
      $("#via").textContent = "via " + (base || "this node");
    }
    break;
  }
  if (!r) throw new Error("no node answers (" + (lost && lost.message) + ")");
  const text = await r.text();
  const index = r.headers.get("X-Cnm-Index");
  if (index) ui.lastIndex = index;
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
  if (!r.ok) {
    const err = new Error((data && data.description) || `HTTP ${r.status}`);
    err.status = r.status;
    err.code = data && data.error_code;
    throw err;
  }
  return data;
}

async function signIn(ev) {
  ev.preventDefault();
  ui.auth = btoa($("#email").value + ":" + $("#password").value);
  try {
    await loadPermissions();
  } catch (e) {
    $("#signin-error").textContent = e.status === 401 ? "Wrong email or password." : e.message;
    $("#signin-error").hidden = false;
    $("#password").value = "";
    ui.auth = "";
    return;
  }
  sessionStorage.setItem("cnm-auth", ui.auth);
  start();
}

async function loadPermissions() {
  const p = await api("GET", "/v1/users/permissions");
  ui.perms = new Set(p.permissions);
  ui.role = p.role;
}

function signOut() {
  sessionStorage.removeItem("cnm-auth");
  ui.auth = "";
  ui.index = "";
  ui.watching++;
  clearTimeout(ui.timer);
  $("#app").hidden = true;
  $("#who").replaceChildren();
  $("#cluster-name").textContent = "";
  $("#banner").hidden = true;
  $("#email").value = "";
  $("#password").value = "";
  $("#signin-error").hidden = true;
  $("#signin").hidden = false;
}

function start() {
  $("#signin").hidden = true;
  $("#app").hidden = false;
  $("#who").replaceChildren(ui.role + " ", el("button", { id: "signout", onclick: signOut }, "Sign out"));
  refresh();
}

// refresh reads the cluster and draws it, then waits with a blocking read
// (?index=N&wait=...) until the cluster state moves on, and draws it
// again: progress shows as it is made, without polling. A read that fails
// (no leader for a moment, a node down) is shown and tried again, so the
// page carries on through a leader change without a reload.
async function refresh() {
  clearTimeout(ui.timer);
  const loop = ++ui.watching;
  while (ui.auth && loop === ui.watching) {
    try {
      if (ui.index) await api("GET", `/v1/nodes/actions?index=${ui.index}&wait=20s`);
      if (loop !== ui.watching) return;
      const [cluster, nodes, status, bdbs, shards, actions] = await Promise.all([
        api("GET", "/v1/cluster"), api("GET", "/v1/nodes"), api("GET", "/v1/nodes/status"),
        api("GET", "/v1/bdbs"), api("GET", "/v1/shards"), api("GET", "/v1/nodes/actions"),
      ]);
      if (!ui.auth || loop !== ui.watching) return;
      ui.index = ui.lastIndex || "";
      draw(cluster, nodes, status, bdbs, shards, actions.actions);
      $("#banner").hidden = true;
    } catch (e) {
      if (e.status === 401) return signOut();
      ui.index = "";
      $("#banner").textContent = "Waiting for the cluster: " + e.message;
      $("#banner").hidden = false;
      await new Promise((ok) => { ui.timer = setTimeout(ok, 1000); });
    }
  }
}

const hue = (bdb) => (bdb * 137) % 360;

function draw(cluster, nodes, status, bdbs, shards, actions) {
  ui.bases = nodes.map((n) => "https://" + n.api_addr).filter((b) => b !== location.origin);
  $("#cluster-name").textContent = cluster.name + (cluster.leader ? `, leader node ${cluster.leader}` : ", no leader");
  const running = {};
  for (const a of actions) if (!terminal(a.status)) running[a.node_uid] = a;
  const cards = nodes.sort((a, b) => a.uid - b.uid).map((n) => nodeCard(n, status[n.uid] || {}, cluster.leader,
    shards.filter((s) => s.node_uid === String(n.uid)), running[String(n.uid)]));
  $("#nodes").replaceChildren(...cards);

  const rows = actions.sort((a, b) => (b.creation_time - a.creation_time) || (a.node_uid < b.node_uid ? -1 : 1)).flatMap(actionRows);
  $("#actions tbody").replaceChildren(...rows);
  $("#no-actions").hidden = rows.length > 0;

  $("#dbs tbody").replaceChildren(...bdbs.map((d) => el("tr", { "data-bdb": d.uid },
    el("td", {}, el("span", { class: "shard master", style: `display:inline-block;width:12px;height:12px;background:hsl(${hue(d.uid)},55%,45%);border-color:hsl(${hue(d.uid)},55%,45%)` }), " ", d.name),
    el("td", {}, gib(d.memory_size)),
    el("td", {}, String(d.shards_count)),
    el("td", {}, d.replication ? "yes" : "no"),
    el("td", {}, d.endpoints.map((e) => `${e.addr[0]}:${e.port} (node ${e.node_uid})`).join(", ")))));
}

function nodeCard(n, st, leader, shards, running) {
  const badges = el("span", {});
  if (n.uid === leader) badges.append(el("span", { class: "badge leader" }, "leader"));
  if (st.maintenance) badges.append(" ", el("span", { class: "badge maintenance" }, "maintenance"));
  const grid = el("div", { class: "shards" }, ...shards.sort((a, b) => a.uid - b.uid).map((s) => {
    const c = `hsl(${hue(s.bdb_uid)},55%,45%)`;
    return el("div", { class: "shard " + s.role, "data-shard": s.uid, "data-role": s.role, title: `shard ${s.uid} of database ${s.bdb_uid}, ${s.role}, slots ${s.assigned_slots}`,
      style: `border-color:${c};` + (s.role === "master" ? `background:${c}` : `color:${c}`) }, s.uid);
  }));
  const buttons = el("div", { class: "buttons" });
  if (ui.perms.has("start_node_action") && !running) {
    const choices = st.maintenance ? [["maintenance_off", "Maintenance off"]] :
      [["maintenance_on", "Maintenance on"], ["enslave_node", "Enslave"], ["remove", "Remove"]];
    for (const [action, label] of choices) {
      buttons.append(el("button", { "data-node": n.uid, "data-action": action, onclick: () => confirmAction(n.uid, action, label) }, label));
    }
  }
  return el("div", { class: "node" + (n.status === "down" ? " down" : ""), "data-node": n.uid },
    el("h3", {}, `Node ${n.uid}`, badges),
    el("div", { class: "facts" }, `${n.status} · ${n.api_addr} · ${gib(n.total_memory)} · ${shards.length}/${n.max_redis_servers} shards` +
      (n.accept_servers ? "" : " · accepts no shards")),
    grid, buttons);
}

// actionRows are an action's row and, below it, its latest events.
function actionRows(a) {
  const events = ((a.additional_info || {}).events || []).slice(-8);
  return [actionRow(a), el("tr", { class: "events", "data-task": a.task_id },
    el("td", { colSpan: 7 }, el("ol", {}, ...events.map((ev) => el("li", {}, ev.message)))))];
}

function actionRow(a) {
  const info = a.additional_info || {};
  const last = info.waiting ? "waits: " + info.waiting :
    a.error_code ? `${a.error_code}: ${a.error_message}` :
      (info.events && info.events.length ? info.events[info.events.length - 1].message : "");
  const cancel = el("td", {});
  if (ui.perms.has("cancel_node_action") && !terminal(a.status) && a.status !== "cancelling") {
    cancel.append(el("button", { class: "cancel", "data-task": a.task_id, onclick: () => cancelAction(a) }, "Cancel"));
  }
  return el("tr", { "data-task": a.task_id, "data-status": a.status },
    el("td", {}, a.node_uid), el("td", {}, a.action), el("td", { class: "status" }, a.status),
    el("td", {}, el("progress", { max: 100, value: a.progress }), " ", el("span", { class: "pct" }, a.progress.toFixed(1) + "%")),
    el("td", {}, `${info.done_ops || 0}/${(info.done_ops || 0) + (info.pending_ops || 0)}`),
    el("td", { class: "latest" }, last), cancel);
}

// confirmAction shows the plan the cluster makes now (a dry run) before
// the action is started.
async function confirmAction(node, action, label) {
  ui.pending = { node, action };
  $("#confirm-title").textContent = `${label} on node ${node}`;
  $("#plan").replaceChildren();
  $("#plan-error").hidden = true;
  $("#confirm-go").disabled = true;
  $("#confirm").showModal();
  try {
    const dry = await api("POST", `/v1/nodes/${node}/actions/${action}?dry_run=true`, {});
    $("#plan").replaceChildren(...dry.plan.map((s) => el("li", {}, describeStep(s))));
    $("#confirm-go").disabled = false;
  } catch (e) {
    $("#plan-error").textContent = e.message;
    $("#plan-error").hidden = false;
  }
}

function describeStep(s) {
  const parts = [s.kind];
  if (s.shard) parts.push(`shard ${s.shard}`);
  if (s.from) parts.push(`from node ${s.from}`);
  if (s.to) parts.push(`to node ${s.to}`);
  if (s.endpoint) parts.push(`endpoint ${s.endpoint}`);
  if (s.snapshot) parts.push(s.snapshot);
  if (s.message) parts.push(s.message);
  return parts.join(" ");
}

async function confirmClosed() {
  const p = ui.pending;
  ui.pending = null;
  if ($("#confirm").returnValue !== "go" || !p) return;
  try {
    await api("POST", `/v1/nodes/${p.node}/actions/${p.action}`, {});
  } catch (e) {
    $("#banner").textContent = `${p.action} of node ${p.node} was refused: ${e.message}`;
    $("#banner").hidden = false;
  }
  refresh();
}

async function cancelAction(a) {
  try {
    await api("DELETE", `/v1/nodes/${a.node_uid}/actions/${a.action}`);
  } catch (e) {
    $("#banner").textContent = `cancel refused: ${e.message}`;
    $("#banner").hidden = false;
  }
  refresh();
}

const terminal = (s) => ["completed", "failed", "cancelled", "aborted"].includes(s);
const gib = (b) => (b >= 1 << 30 ? (b / (1 << 30)).toFixed(1) + " GiB" : (b / (1 << 20)).toFixed(0) + " MiB");

$("#signin").addEventListener("submit", signIn);
$("#confirm").addEventListener("close", confirmClosed);
if (ui.auth) loadPermissions().then(start, () => { ui.auth = ""; });
