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

async function leaderboard() {
  show("leaderboard");
  const page = await json("/v1/accounts?limit=100");
  const body = $("accounts");
  body.replaceChildren();
  for (const account of page.items) {
    const row = body.insertRow();
    link(cell(row, ""), account.account_id, () => openAccount(account.account_id));
    cell(row, account.score.toFixed(3));
    cell(row, account.label, `label-${account.label}`);
    cell(row, account.requests_seen);
    const campaign = cell(row, account.cluster_id);
    if (account.cluster_id) link(campaign, account.cluster_id, () => openCampaign(account.cluster_id));
  }
}

function drawScores(history) {
  const svg = $("score-chart");
  svg.replaceChildren();
  const ns = "http://www.w3.org/2000/svg";
  const points = [...history].reverse();
  if (!points.length) return;
  const t0 = points[0].timestamp_ms, t1 = points[points.length - 1].timestamp_ms || t0 + 1;
  const x = (t) => 20 + 600 * (t1 > t0 ? (t - t0) / (t1 - t0) : 0.5);
  const y = (s) => 150 - 140 * s;
  const threshold = document.createElementNS(ns, "line");
  for (const [k, v] of Object.entries({ x1: 20, x2: 620, y1: y(0.5), y2: y(0.5), stroke: "#b00", "stroke-dasharray": "4" })) threshold.setAttribute(k, v);
  svg.appendChild(threshold);
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("points", points.map((p) => `${x(p.timestamp_ms)},${y(p.score)}`).join(" "));
  line.setAttribute("fill", "none"); line.setAttribute("stroke", "#1d5fa8"); line.setAttribute("stroke-width", "2");
  svg.appendChild(line);
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
  const events = await json(`/v1/events?account_id=${encodeURIComponent(accountId)}&limit=50`);
  const rows = $("events");
  rows.replaceChildren();
  for (const event of events.items) {
    const row = rows.insertRow();
    cell(row, time(event.timestamp_ms));
    cell(row, event.prompt_text, "prompt");
  }
  $("download-report").onclick = () => downloadReport(accountId);
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
for (const button of document.querySelectorAll("nav button")) {
  button.addEventListener("click", () => (button.dataset.view === "alerts" ? alerts() : leaderboard()));
}
window.addEventListener("hashchange", () => { if (state.token) route(); });
if (state.token) signIn(state.token);
