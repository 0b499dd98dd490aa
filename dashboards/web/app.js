// DistillGuard dashboard: a thin client of the token-protected API. Every piece of data is
// written with textContent (never innerHTML), so prompt text and ids stay inert; links are only
// ever built to our own views, never from data.
"use strict";

const state = { token: sessionStorage.getItem("dg-token") || "" };
const $ = (id) => document.getElementById(id);

async function api(path, options = {}) {
  const response = await fetch(path, {
    ...options,
    headers: { Authorization: `Bearer ${state.token}`, "Content-Type": "application/json" },
  });
  if (response.status === 401) { signOut("Token refused: sign in again."); throw new Error("401"); }
  if (!response.ok) throw new Error(`${response.status} ${path}`);
  return response;
}
const json = async (path, options) => (await api(path, options)).json();

function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text === null || text === undefined ? "—" : String(text);
  if (className) td.className = className;
  return td;
}
function link(td, text, onClick) {
  td.textContent = "";
  const a = document.createElement("a");
  a.textContent = text;
  a.addEventListener("click", onClick);
  td.appendChild(a);
}
function show(view) {
  for (const section of document.querySelectorAll(".view")) section.hidden = section.id !== view;
}
function time(ms) { return new Date(ms).toISOString().replace("T", " ").slice(0, 19); }

async function signIn(token) {
  state.token = token;
  try {
    await json("/v1/accounts?limit=1");
  } catch (error) {
    $("sign-in-error").textContent = "That token was not accepted.";
    state.token = "";
    return;
  }
  sessionStorage.setItem("dg-token", token);
  $("sign-in").hidden = true; $("app").hidden = false; $("sign-out").hidden = false;
  if (!route()) await leaderboard();
}

// Deep links, as alerts carry them: #/accounts/<id> and #/campaigns/<id> (percent-encoded).
function route() {
  const match = /^#\/(accounts|campaigns)\/(.+)$/.exec(location.hash);
  if (!match) return false;
  let id;
  try { id = decodeURIComponent(match[2]); } catch { return false; }
  if (match[1] === "accounts") openAccount(id); else openCampaign(id);
  return true;
}
function signOut(message) {
  sessionStorage.removeItem("dg-token");
  state.token = "";
  $("app").hidden = true; $("sign-in").hidden = false; $("sign-out").hidden = true;
  $("sign-in-error").textContent = message || "";
}

// The leaderboard loads up to one API page (500) of ranked accounts, filtered by label and
// disposition on the server; search, time range and sorting then work on what is loaded.
const MAX_PAGE = 500;  // the API's largest page (services.api.deps.MAX_PAGE)
const leaderboardState = { accounts: [], sort: { key: "score", dir: -1 }, latest: 0 };

async function leaderboard() {
  show("leaderboard");
  const query = new URLSearchParams({ limit: String(MAX_PAGE) });
  if ($("label-filter").value) query.set("label", $("label-filter").value);
  if ($("disposition-filter").value) query.set("disposition", $("disposition-filter").value);
  const request = ++leaderboardState.latest;
  const items = (await json(`/v1/accounts?${query}`)).items;
  // The latest request's answer wins: an earlier one (say, before a filter changed) that
  // arrives later must not overwrite it.
  if (request !== leaderboardState.latest) return;
  leaderboardState.accounts = items;
  renderLeaderboard();
}

function utcInput(id) {  // a datetime-local input read as UTC, like every time the page shows
  const value = $(id).value;
  return value ? Date.parse(`${value}Z`) : null;
}

function renderLeaderboard() {
  const needle = $("search").value.trim().toLowerCase();
  const since = utcInput("since"), until = utcInput("until");
  const { key, dir } = leaderboardState.sort;
  const rows = leaderboardState.accounts
    .filter((a) => !needle || a.account_id.toLowerCase().includes(needle))
    .filter((a) => (since === null || a.last_verdict_ms >= since) && (until === null || a.last_verdict_ms <= until))
    .sort((a, b) => {
      const x = a[key] ?? "", y = b[key] ?? "";
      return (x < y ? -1 : x > y ? 1 : 0) * dir || a.account_id.localeCompare(b.account_id);
    });
  const body = $("accounts");
  body.replaceChildren();
  for (const account of rows) {
    const row = body.insertRow();
    link(cell(row, ""), account.account_id, () => openAccount(account.account_id));
    cell(row, account.score.toFixed(3));
    cell(row, account.label, `label-${account.label}`);
    cell(row, account.requests_seen);
    cell(row, time(account.last_verdict_ms));
    const campaign = cell(row, account.cluster_id);
    if (account.cluster_id) link(campaign, account.cluster_id, () => openCampaign(account.cluster_id));
  }
  $("shown-count").textContent = `${rows.length} of ${leaderboardState.accounts.length} accounts`;
  for (const th of document.querySelectorAll("#accounts-table th[data-sort]")) {
    const sorted = th.dataset.sort === key;
    th.setAttribute("aria-sort", sorted ? (dir > 0 ? "ascending" : "descending") : "none");
  }
}

function sortBy(key) {
  const current = leaderboardState.sort;
  const numeric = ["score", "requests_seen", "last_verdict_ms"].includes(key);
  leaderboardState.sort = { key, dir: current.key === key ? -current.dir : numeric ? -1 : 1 };
  renderLeaderboard();
}

// --- charts: hand-drawn SVG with axes (no library: two small charts, no CDN, CSP-clean) ---
const SVG_NS = "http://www.w3.org/2000/svg";
const PLOT = { left: 48, right: 24, top: 14, bottom: 40 };

function svgEl(parent, tag, attributes = {}, text) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attributes)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  parent.appendChild(el);
  return el;
}

// Axes for a plot area: ticks on both, labels under and beside; returns the x and y scales.
function axes(svg, { x: [x0, x1], y: [y0, y1], xTicks, yTicks, xFormat, yFormat, xLabel, yLabel }) {
  svg.replaceChildren();
  const width = Number(svg.getAttribute("width")), height = Number(svg.getAttribute("height"));
  const right = width - PLOT.right, bottom = height - PLOT.bottom;
  const sx = (v) => PLOT.left + (right - PLOT.left) * (x1 > x0 ? (v - x0) / (x1 - x0) : 0.5);
  const sy = (v) => bottom - (bottom - PLOT.top) * (y1 > y0 ? (v - y0) / (y1 - y0) : 0);
  const xAxis = svgEl(svg, "g", { class: "axis x-axis" });
  svgEl(xAxis, "line", { x1: PLOT.left, x2: right, y1: bottom, y2: bottom });
  for (const t of xTicks) {
    svgEl(xAxis, "line", { x1: sx(t), x2: sx(t), y1: bottom, y2: bottom + 4 });
    svgEl(xAxis, "text", { class: "tick", x: sx(t), y: bottom + 15, "text-anchor": "middle" }, xFormat(t));
  }
  svgEl(xAxis, "text", { class: "axis-label", x: (PLOT.left + right) / 2, y: height - 4, "text-anchor": "middle" }, xLabel);
  const yAxis = svgEl(svg, "g", { class: "axis y-axis" });
  svgEl(yAxis, "line", { x1: PLOT.left, x2: PLOT.left, y1: PLOT.top, y2: bottom });
  for (const t of yTicks) {
    svgEl(svg, "line", { class: "grid", x1: PLOT.left + 1, x2: right, y1: sy(t), y2: sy(t) });
    svgEl(yAxis, "line", { x1: PLOT.left - 4, x2: PLOT.left, y1: sy(t), y2: sy(t) });
    svgEl(yAxis, "text", { class: "tick", x: PLOT.left - 6, y: sy(t) + 4, "text-anchor": "end" }, yFormat(t));
  }
  svgEl(yAxis, "text", { class: "axis-label", x: 12, y: (PLOT.top + bottom) / 2, "text-anchor": "middle",
    transform: `rotate(-90 12 ${(PLOT.top + bottom) / 2})` }, yLabel);
  return { sx, sy, left: PLOT.left, right };
}

function spread(lo, hi, n) { return Array.from({ length: n }, (_, i) => lo + ((hi - lo) * i) / (n - 1)); }
function clock(ms, withDate) { const t = time(ms); return withDate ? t.slice(5, 16) : t.slice(11, 16); }
function daySpan(t0, t1) { return t1 - t0 > 20 * 3600_000; }

// Extraction is at exactly 0.5 by construction (score = 1 − 2^(−raw / extraction threshold));
// the suspicious threshold is per calibration and not served by the API, so points carry labels.
const EXTRACTION_THRESHOLD = 0.5;

function drawScores(history) {
  const svg = $("score-chart");
  const points = [...history].reverse();
  const t0 = points.length ? points[0].timestamp_ms : Date.now();
  const t1 = points.length ? points[points.length - 1].timestamp_ms : t0;
  const pad = t1 > t0 ? 0 : 1800_000;  // one verdict: half an hour either side
  const dated = daySpan(t0, t1);
  const { sx, sy, left, right } = axes(svg, {
    x: [t0 - pad, t1 + pad], y: [0, 1], xTicks: spread(t0 - pad, t1 + pad, 4), yTicks: spread(0, 1, 5),
    xFormat: (t) => clock(t, dated), yFormat: (v) => v.toFixed(2),
    xLabel: dated ? "verdict time (UTC, month-day hour:minute)" : `verdict time (UTC, ${time(t0).slice(0, 10)})`, yLabel: "score",
  });
  svgEl(svg, "line", { class: "threshold", x1: left, x2: right, y1: sy(EXTRACTION_THRESHOLD), y2: sy(EXTRACTION_THRESHOLD) });
  svgEl(svg, "text", { class: "threshold-label", x: right - 2, y: sy(EXTRACTION_THRESHOLD) - 4, "text-anchor": "end" },
    `extraction threshold ${EXTRACTION_THRESHOLD}`);
  svgEl(svg, "polyline", { points: points.map((p) => `${sx(p.timestamp_ms)},${sy(p.score)}`).join(" "),
    fill: "none", stroke: "#1d5fa8", "stroke-width": 1.5 });
  for (const p of points) {
    const dot = svgEl(svg, "circle", { class: `point ${p.label}`, cx: sx(p.timestamp_ms), cy: sy(p.score), r: 4 });
    svgEl(dot, "title", {}, `${time(p.timestamp_ms)}: ${p.score.toFixed(3)} ${p.label} after ${p.requests_seen} requests`);
  }
}

function drawHourly(events) {
  const svg = $("hourly-chart");
  const counts = new Map();
  for (const e of events) {
    const hour = Math.floor(e.timestamp_ms / 3600_000) * 3600_000;
    counts.set(hour, (counts.get(hour) || 0) + 1);
  }
  const hours = [...counts.keys()].sort((a, b) => a - b);
  const h0 = hours.length ? hours[0] : Math.floor(Date.now() / 3600_000) * 3600_000;
  const h1 = (hours.length ? hours[hours.length - 1] : h0) + 3600_000;
  const step = Math.max(1, Math.ceil(Math.max(1, ...counts.values()) / 4));  // whole-number ticks
  const top = step * Math.ceil(Math.max(1, ...counts.values()) / step);
  const every = Math.max(1, Math.ceil((h1 - h0) / 3600_000 / 6)) * 3600_000;
  const dated = daySpan(h0, h1);
  const { sx, sy } = axes(svg, {
    x: [h0, h1], y: [0, top], xTicks: spread(0, Math.floor((h1 - h0) / every), Math.floor((h1 - h0) / every) + 1).map((i) => h0 + i * every),
    yTicks: spread(0, top, top / step + 1), xFormat: (t) => clock(t, dated), yFormat: String,
    xLabel: dated ? "hour (UTC, month-day hour:00)" : `hour (UTC, ${time(h0).slice(0, 10)})`, yLabel: "requests",
  });
  for (const hour of hours) {
    const x = sx(hour) + 1, width = Math.max(1, sx(hour + 3600_000) - sx(hour) - 2);
    const bar = svgEl(svg, "rect", { class: "bar", x, y: sy(counts.get(hour)), width, height: sy(0) - sy(counts.get(hour)) });
    svgEl(bar, "title", {}, `${time(hour).slice(0, 13)}:00 UTC: ${counts.get(hour)} requests`);
  }
}

const EVENTS_PAGE = 20, HOURLY_PAGES = 4;  // 4 pages of 500: the chart's requests
const accountState = { id: "", offset: 0, shared: [] };

// Prompts the campaign evidence shows shared with another member (near-duplicates and
// templates the linker matched), stored as their first EXAMPLE_CHARS characters.
const EXAMPLE_CHARS = 160;  // detectors.campaigns.evidence.EXAMPLE_CHARS
function sharedPrompts(reasons) {
  return reasons.filter((r) => r.signal === "campaign")
    .flatMap((r) => ((r.evidence || {}).example_prompts || []).filter((x) => typeof x === "string" && x));
}
function sharedWith(prompt, shared) {
  return shared.includes(prompt.slice(0, EXAMPLE_CHARS));
}

async function openAccount(accountId) {
  show("account");
  const detail = await json(`/v1/accounts/${encodeURIComponent(accountId)}`);
  const latest = detail.latest || { label: "none", score: 0, reasons: [] };
  $("account-id").textContent = detail.account_id;
  $("account-label").textContent = latest.label;
  $("account-label").className = `label-${latest.label}`;
  $("account-score").textContent = latest.score.toFixed(3);
  $("account-requests").textContent = detail.requests;
  const campaign = $("account-campaign");
  campaign.replaceChildren();
  if (latest.cluster_id) {
    campaign.append("Member of campaign ");
    const a = document.createElement("a");
    a.textContent = latest.cluster_id;
    a.addEventListener("click", () => openCampaign(latest.cluster_id));
    campaign.appendChild(a);
  }
  drawScores(detail.history);
  const reasons = $("reasons");
  reasons.replaceChildren();
  for (const reason of latest.reasons) {
    const row = reasons.insertRow();
    cell(row, reason.signal);
    cell(row, (reason.evidence || {}).explanation);
    cell(row, reason.value);
    cell(row, reason.contribution);
  }
  Object.assign(accountState, { id: accountId, offset: 0, shared: sharedPrompts(latest.reasons) });
  $("download-report").onclick = () => downloadReport(accountId);
  const counted = [];  // the API lists requests oldest first: up to HOURLY_PAGES pages of them
  let next = 0;
  for (let pages = 0; next !== null && pages < HOURLY_PAGES; pages++) {
    const page = await json(`/v1/events?account_id=${encodeURIComponent(accountId)}&limit=${MAX_PAGE}&offset=${next}`);
    counted.push(...page.items);
    next = page.next_offset;
  }
  $("hourly-sample").textContent = `${next === null ? "all" : "the first"} ${counted.length} requests`;
  drawHourly(counted);
  await showEvents(0);
  await showDispositions($("account-disposition"), "account", accountId);
}

// Dispositions (confirmed extraction, false positive, allowlisted until a date, cleared), with
// their history; the same controls on an account and on a campaign.
const DISPOSITION_ROUTES = { account: "accounts", cluster: "clusters" };
for (const box of document.querySelectorAll(".disposition")) {
  box.replaceChildren($("disposition-controls").content.cloneNode(true));
}
async function showDispositions(box, kind, subjectId) {
  const history = await json(`/v1/${DISPOSITION_ROUTES[kind]}/${encodeURIComponent(subjectId)}/dispositions`);
  const current = history.items.find((d) => d.active);
  box.querySelector(".disposition-current").textContent = current ? current.disposition : "none";
  const rows = box.querySelector(".disposition-history");
  rows.replaceChildren();
  for (const d of history.items) {
    const row = rows.insertRow();
    for (const text of [d.at.slice(0, 19).replace("T", " "), d.disposition, d.reason,
      d.expires_at ? d.expires_at.slice(0, 19).replace("T", " ") : "", d.assignee, d.note, d.actor]) cell(row, text);
  }
  const form = box.querySelector(".disposition-form");
  form.onsubmit = async (submitted) => {
    submitted.preventDefault();
    const field = (name) => form.elements[name].value;
    const body = { subject_kind: kind, subject_id: subjectId, disposition: field("disposition"),
      reason: field("reason"), assignee: field("assignee"), note: field("note") };
    if (field("expires_at")) body.expires_at = `${field("expires_at")}:00Z`;
    const status = box.querySelector(".disposition-status");
    const response = await fetch("/v1/dispositions", { method: "POST", body: JSON.stringify(body),
      headers: { Authorization: `Bearer ${state.token}`, "Content-Type": "application/json" } });
    if (response.ok) {
      status.textContent = "saved";
      form.reset();
      await showDispositions(box, kind, subjectId);
    } else {
      const error = (await response.json()).error || {};
      const issues = Array.isArray(error.message) ? error.message.map((m) => m.message).join("; ") : error.message;
      status.textContent = `not saved: ${issues || response.status}`;
    }
  };
}

async function showEvents(offset) {
  const { id, shared } = accountState;
  const page = await json(`/v1/events?account_id=${encodeURIComponent(id)}&limit=${EVENTS_PAGE}&offset=${offset}`);
  if (id !== accountState.id) return;  // another account was opened meanwhile
  accountState.offset = offset;
  const rows = $("events");
  rows.replaceChildren();
  for (const event of page.items) {
    const row = rows.insertRow();
    cell(row, time(event.timestamp_ms));
    cell(row, event.request_id);
    const prompt = cell(row, event.prompt_text, "prompt");
    const match = sharedWith(event.prompt_text, shared);
    if (match) {
      row.className = "matched";
      row.title = "shared with another campaign member";
      const badge = document.createElement("span");
      badge.className = "badge";
      badge.textContent = "shared";
      prompt.prepend(badge);
    }
  }
  const first = page.items.length ? offset + 1 : offset;
  $("events-page").textContent = `requests ${first}–${offset + page.items.length} (oldest first)`;
  $("events-prev").disabled = offset === 0;
  $("events-next").disabled = page.next_offset === null;
  $("events-next").onclick = () => showEvents(page.next_offset);
  $("events-prev").onclick = () => showEvents(Math.max(0, offset - EVENTS_PAGE));
}

async function downloadReport(accountId) {
  $("report-status").textContent = "generating …";
  // A report is a job: queued at once, polled until done (Chromium can take a while).
  let job = await json("/v1/reports", { method: "POST", body: JSON.stringify({ account_id: accountId }) });
  while (job.status === "queued" || job.status === "running") {
    await new Promise((resolve) => setTimeout(resolve, 500));
    job = await json(`/v1/reports/jobs/${job.job_id}`);
  }
  if (job.status !== "done") { $("report-status").textContent = `report failed: ${job.error}`; return; }
  const blob = await (await api(`/v1/reports/${job.report_id}/report.pdf`)).blob();
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = `distillguard-report-${job.report_id}.pdf`;
  document.body.appendChild(a); a.click(); a.remove();
  $("report-status").textContent = `report ${job.report_id} (sha256 ${job.report_sha256.slice(0, 16)}…)`;
}

async function openCampaign(clusterId) {
  show("campaign");
  const campaign = await json(`/v1/clusters/${encodeURIComponent(clusterId)}`);
  $("campaign-id").textContent = campaign.cluster_id;
  $("campaign-label").textContent = campaign.label;
  $("campaign-score").textContent = campaign.score.toFixed(3);
  const list = $("campaign-members");
  list.replaceChildren();
  for (const member of campaign.members) {
    const item = document.createElement("li");
    link(item, member, () => openAccount(member));
    list.appendChild(item);
  }
  drawCampaign(campaign.members, (campaign.evidence || {}).links || []);
  showEvidence(campaign.evidence || {});
  await showDispositions($("campaign-disposition"), "cluster", clusterId);
}

// Members on a circle, links as lines labelled with the pieces of evidence that tie them.
function drawCampaign(members, links) {
  const svg = $("campaign-graph");
  svg.replaceChildren();
  const width = Number(svg.getAttribute("width")), height = Number(svg.getAttribute("height"));
  const cx = width / 2, cy = height / 2, radius = Math.min(cx, cy) - 70;
  const at = new Map(members.map((m, i) => {
    const angle = (2 * Math.PI * i) / members.length - Math.PI / 2;
    return [m, members.length === 1 ? [cx, cy] : [cx + radius * Math.cos(angle), cy + radius * Math.sin(angle)]];
  }));
  const drawn = links.filter((l) => at.has(l.a) && at.has(l.b));
  const strongest = Math.max(1, ...drawn.map((l) => l.strength));
  const edges = svgEl(svg, "g", { class: "edges" });
  for (const l of drawn) {
    const [[x1, y1], [x2, y2]] = [at.get(l.a), at.get(l.b)];
    const g = svgEl(edges, "g", { class: "link" });
    svgEl(g, "line", { class: "edge", x1, y1, x2, y2, "stroke-width": 1 + (3 * l.strength) / strongest });
    const label = l.pieces.slice(0, 3).join(" + ") + (l.shared_prompts ? ` (${l.shared_prompts} prompts)` : "");
    svgEl(g, "text", { class: "edge-label", x: (x1 + x2) / 2, y: (y1 + y2) / 2 - 3, "text-anchor": "middle" }, label);
    svgEl(g, "title", {}, `${l.a} — ${l.b}: strength ${l.strength} (${l.pieces.join(", ")})`);
  }
  const nodes = svgEl(svg, "g", { class: "nodes" });
  for (const [member, [x, y]] of at) {
    const g = svgEl(nodes, "g", { class: "node" });
    svgEl(g, "circle", { cx: x, cy: y, r: 9 }).addEventListener("click", () => openAccount(member));
    const outside = x >= cx ? 1 : -1;
    const name = member.length > 24 ? `${member.slice(0, 23)}…` : member;  // the whole id on hover
    svgEl(g, "text", { x: x + 13 * outside, y: y + 4, "text-anchor": outside > 0 ? "start" : "end" }, name);
    svgEl(g, "title", {}, member);
  }
}

function showEvidence(evidence) {
  const list = $("campaign-evidence");
  list.replaceChildren();
  const describe = (value) => (Array.isArray(value) ? value.join(" · ")
    : Object.entries(value).map(([k, v]) => `${k}: ${v}`).join(", "));
  const shown = { shared_prefixes: "Shared network prefixes (accounts)", user_agents: "Shared user agents (accounts)",
    evidence_share: "Share of the evidence by piece", example_prompts: "Example shared prompts",
    busiest_hours_utc: "Busiest hours (UTC)" };
  for (const [key, title] of Object.entries(shown)) {
    const value = evidence[key];
    if (value === undefined || value === null || !Object.keys(value).length) continue;
    const dt = document.createElement("dt"), dd = document.createElement("dd");
    dt.textContent = title;
    dd.textContent = describe(value);
    list.append(dt, dd);
  }
}

async function alerts() {
  show("alerts");
  const page = await json("/v1/alerts?limit=100");
  const body = $("alert-rows");
  body.replaceChildren();
  for (const alert of page.items) {
    const row = body.insertRow();
    cell(row, time(alert.created_time * 1000));
    cell(row, alert.kind);
    cell(row, alert.account_id || alert.cluster_id);
    cell(row, `${alert.status} (${alert.attempts} attempts)`);
    const action = row.insertCell();
    if (alert.acknowledged_by) { action.textContent = "acknowledged"; continue; }
    const button = document.createElement("button");
    button.textContent = "Acknowledge";
    button.addEventListener("click", async () => {
      await json(`/v1/alerts/${encodeURIComponent(alert.alert_id)}/ack`, { method: "POST" });
      await alerts();
    });
    action.appendChild(button);
  }
}

$("sign-in-form").addEventListener("submit", (event) => { event.preventDefault(); signIn($("token").value.trim()); });
$("sign-out").addEventListener("click", () => signOut());
for (const th of document.querySelectorAll("#accounts-table th[data-sort]")) {
  th.addEventListener("click", () => sortBy(th.dataset.sort));
}
$("filters").addEventListener("submit", (event) => event.preventDefault());
for (const id of ["search", "since", "until"]) $(id).addEventListener("input", renderLeaderboard);
for (const id of ["label-filter", "disposition-filter"]) $(id).addEventListener("change", leaderboard);
for (const button of document.querySelectorAll("nav button")) {
  button.addEventListener("click", () => (button.dataset.view === "alerts" ? alerts() : leaderboard()));
}
window.addEventListener("hashchange", () => { if (state.token) route(); });
if (state.token) signIn(state.token);
