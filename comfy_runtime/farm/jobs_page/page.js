// The farm's jobs page. Plain JS, no build step, no dependencies.
// Rules kept here: every piece of user or server text goes in with textContent (never innerHTML), every URL the
// server sends goes only into src attributes of <video>/<img>, and the token lives in sessionStorage only.
"use strict";

const TOKEN_KEY = "hv-farm-token";
const POLL_MS = 1000;
const PAGE_SIZE = 20;
const TERMINAL = new Set(["succeeded", "failed", "canceled"]);

const state = {
  inputs: [],          // declarations from GET /inputs
  jobs: new Map(),     // id -> {element, seen: [{step, at}]}
  order: [],           // ids, newest first
  older: undefined,    // the `next` cursor URL of the list; null once every older page is shown
  timer: null,
};

function $(id) { return document.getElementById(id); }

function token() { return sessionStorage.getItem(TOKEN_KEY); }

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

class Refused extends Error {
  constructor(status, body) {
    super(typeof body?.detail === "string" ? body.detail : `the gateway answered ${status}`);
    this.status = status;
    this.body = body;
  }
}

async function api(path, options = {}) {
  const headers = { Accept: "application/json", ...(options.headers || {}) };
  const current = token();
  if (current) headers.Authorization = `Bearer ${current}`;
  const answer = await fetch(path, { ...options, headers, cache: "no-store" });
  let body = null;
  try { body = await answer.json(); } catch (_) { body = null; }
  if (answer.status === 401) {
    signOut("The gateway refused the token (401): sign in again with a valid one.");
    throw new Refused(401, body);
  }
  if (!answer.ok) throw new Refused(answer.status, body);
  return body;
}

// -- sign in ---------------------------------------------------------------------------------------------
async function signIn(event) {
  event.preventDefault();
  $("sign-in-error").textContent = "";
  sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
  $("token").value = "";
  try {
    await api(`/predictions?limit=1`);
  } catch (error) {
    if (!(error instanceof Refused && error.status === 401)) {
      sessionStorage.removeItem(TOKEN_KEY);
      $("sign-in-error").textContent = `Sign-in failed: ${error.message}`;
    }
    return;
  }
  await showApp();
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  if (state.timer) clearTimeout(state.timer);
  state.timer = null;
  state.jobs.clear();
  state.order = [];
  state.older = undefined;
  $("older").hidden = true;
  $("job-list").replaceChildren();
  $("app").hidden = true;
  $("sign-out").hidden = true;
  $("sign-in").hidden = false;
  $("sign-in-error").textContent = typeof message === "string" ? message : "";
}

async function showApp() {
  $("sign-in").hidden = true;
  $("app").hidden = false;
  $("sign-out").hidden = false;
  if (!state.inputs.length) {
    state.inputs = (await api("/inputs")).inputs;
    buildForm(state.inputs);
  }
  await poll();
}

// -- the submit form, generated from GET /inputs ----------------------------------------------------------
function buildForm(inputs) {
  $("fields").replaceChildren();
  $("optional-fields").replaceChildren();
  for (const input of inputs) {
    const row = element("div", "field");
    row.dataset.name = input.name;
    const id = `input-${input.name}`;
    const label = element("label", null, input.name + (input.required ? " *" : ""));
    label.htmlFor = id;
    let control;
    if (input.choices) {
      control = document.createElement("select");
      for (const choice of input.choices) {
        const option = element("option", null, choice);
        option.value = String(choice);
        option.selected = choice === input.default;
        control.append(option);
      }
    } else if (input.multiline) {
      control = document.createElement("textarea");
      control.rows = input.required ? 3 : 1;
      control.maxLength = input.max_length;
    } else {
      control = document.createElement("input");
      if (input.type === "int" || input.type === "float") {
        control.type = "number";
        if (input.minimum !== undefined) control.min = String(input.minimum);
        if (input.maximum !== undefined) control.max = String(input.maximum);
        control.step = input.step !== undefined ? String(input.step) : (input.type === "int" ? "1" : "any");
      } else {
        control.type = "text";
        if (input.max_length) control.maxLength = input.max_length;
      }
    }
    control.id = id;
    control.name = input.name;
    control.required = input.required;
    // Defaults are placeholders, not values: an empty field is not sent, and the workflow's own default applies.
    if (!input.choices && input.default !== null && input.default !== undefined) control.placeholder = String(input.default);
    // The rule in a line under the field; the whole description (with its advice) on hover.
    const hint = element("small", "hint", `${input.summary}: ${input.rule}`);
    hint.title = input.description;
    label.title = input.description;
    const error = element("span", "field-error");
    error.id = `error-${input.name}`;
    error.setAttribute("role", "alert");
    control.setAttribute("aria-describedby", error.id);
    row.append(label, control, error, hint);
    $(input.required ? "fields" : "optional-fields").append(row);
  }
}

function formValues() {
  const values = {};
  for (const input of state.inputs) {
    const control = $(`input-${input.name}`);
    const raw = control.value;
    if (input.choices) {
      if (raw !== String(input.default)) values[input.name] = raw;
      continue;
    }
    if (raw === "") {
      // A number field holding text the browser cannot read reports "": say so instead of dropping it.
      if (control.validity && control.validity.badInput) values[input.name] = "not a number";
      continue;
    }
    values[input.name] = (input.type === "int" || input.type === "float") ? Number(raw) : raw;
  }
  return values;
}

function clearErrors() {
  for (const node of document.querySelectorAll(".field-error")) node.textContent = "";
  for (const node of document.querySelectorAll("[aria-invalid]")) node.removeAttribute("aria-invalid");
  $("submit-error").textContent = "";
}

function showProblems(body, status) {
  const problems = Array.isArray(body?.detail) ? body.detail : [];
  let placed = false;
  for (const problem of problems) {
    const loc = Array.isArray(problem.loc) ? problem.loc : [];
    const name = loc[0] === "body" && loc[1] === "input" ? loc[2] : undefined;
    const slot = name !== undefined ? $(`error-${name}`) : null;
    if (slot) {
      if (slot.closest("details")) slot.closest("details").open = true;  // the refused field in view
      slot.textContent = problem.msg;  // the gateway's one line, as text
      $(`input-${name}`).setAttribute("aria-invalid", "true");
      placed = true;
    } else {
      $("submit-error").textContent = problem.msg;
      placed = true;
    }
  }
  if (!placed) {
    const text = typeof body?.detail === "string" ? body.detail : `the gateway answered ${status}`;
    $("submit-error").textContent = text;
  }
}

async function submitJob(event) {
  event.preventDefault();
  clearErrors();
  const button = $("submit-button");
  button.disabled = true;
  try {
    const prediction = await api("/predictions", {
      method: "POST",
      headers: { "Content-Type": "application/json", Prefer: "respond-async" },
      body: JSON.stringify({ input: formValues() }),
    });
    upsertJob(prediction, true);
  } catch (error) {
    if (error instanceof Refused && error.status !== 401) showProblems(error.body, error.status);
    else if (!(error instanceof Refused)) $("submit-error").textContent = `Not submitted: ${error.message}`;
  } finally {
    button.disabled = false;
  }
}

// -- the jobs list --------------------------------------------------------------------------------------
function percentOf(prediction) {
  if (prediction.status === "succeeded") return 100;
  const farm = prediction.farm || {};
  // The step counter moves every step; a preview's step only every few: the preview's is the fallback.
  const progress = farm.progress && farm.progress.total ? farm.progress : (farm.preview || {});
  if (progress.total > 0 && progress.step >= 0) return Math.min(100, Math.floor((100 * progress.step) / progress.total));
  return 0;
}

function seconds(value) {
  const total = Math.max(0, Math.round(value));
  if (total < 60) return `${total} s`;
  return `${Math.floor(total / 60)} min ${total % 60} s`;
}

function etaOf(prediction, job) {
  if (TERMINAL.has(prediction.status)) return "";
  const farm = prediction.farm || {};
  if (typeof farm.eta_seconds === "number") return `ETA ${seconds(farm.eta_seconds)}`;
  // No estimate from the farm: this tab's own, from the steps it has seen go by (no clock shared with the server).
  const progress = farm.progress || {};
  if (!(progress.total > 0) || typeof progress.step !== "number") return prediction.status === "starting" ? "queued" : "";
  const now = performance.now();
  const seen = job.seen;
  if (!seen.length || seen[seen.length - 1].step !== progress.step) seen.push({ step: progress.step, at: now });
  if (seen.length > 20) seen.shift();
  const first = seen[0];
  const last = seen[seen.length - 1];
  if (last.step <= first.step) return "ETA …";
  const rate = (last.step - first.step) / (last.at - first.at);
  return `ETA ${seconds((progress.total - progress.step) / rate / 1000)}`;
}

function newJobElement(id) {
  const item = element("li", "job");
  item.dataset.id = id;
  const head = element("div", "job-head");
  head.append(element("span", "status"), element("span", "eta"), element("code", "job-id", id.slice(0, 12)));
  const bar = element("div", "bar");
  const progress = document.createElement("progress");
  progress.max = 100;
  progress.value = 0;
  bar.append(progress, element("span", "percent", "0%"));
  // The farm uploads its live preview as webp (an <img>) or mp4 (a looping, muted <video>): one of each, one shown.
  const preview = element("img", "preview");
  preview.alt = "live preview";
  preview.hidden = true;
  const moving = element("video", "preview preview-video");
  moving.muted = true;
  moving.loop = true;
  moving.autoplay = true;
  moving.playsInline = true;
  moving.hidden = true;
  const video = element("video", "video");
  video.controls = true;
  video.preload = "auto";
  video.muted = true;
  video.hidden = true;
  const cancel = element("button", "cancel", "Cancel");
  cancel.type = "button";
  cancel.addEventListener("click", () => cancelJob(id, cancel));
  item.append(head, element("p", "prompt"), bar, preview, moving, video, element("p", "error"), cancel);
  return item;
}

function upsertJob(prediction, prepend = false) {
  let job = state.jobs.get(prediction.id);
  if (!job) {
    job = { element: newJobElement(prediction.id), seen: [] };
    state.jobs.set(prediction.id, job);
    if (prepend) {
      state.order.unshift(prediction.id);
      $("job-list").prepend(job.element);
    } else {
      state.order.push(prediction.id);
      $("job-list").append(job.element);
    }
  }
  renderJob(job, prediction);
  $("no-jobs").hidden = state.jobs.size > 0;
}

function renderJob(job, prediction) {
  const item = job.element;
  const find = (selector) => item.querySelector(selector);
  item.dataset.status = prediction.status;
  find(".status").textContent = prediction.status;
  find(".prompt").textContent = prediction.input && typeof prediction.input.prompt === "string" ? prediction.input.prompt : "";
  const percent = percentOf(prediction);
  find("progress").value = percent;
  find(".percent").textContent = `${percent}%`;
  find(".eta").textContent = etaOf(prediction, job);
  // The latest preview while it renders, and the last one of a failed or canceled job (the farm drops it on success).
  const preview = (prediction.farm || {}).preview;
  const image = find("img.preview");
  const moving = find("video.preview");
  const url = preview && typeof preview.url === "string" ? preview.url : null;
  const isVideo = url !== null && /\.mp4$/i.test(url.split("?")[0]);
  const shown = isVideo ? moving : image;
  (isVideo ? image : moving).hidden = true;
  if (url !== null && prediction.status !== "succeeded") {
    // A new step's preview is a new URL (or the same object re-signed): reload only when the step moved.
    const step = String(preview.step ?? "");
    if (shown.dataset.step !== step || !shown.getAttribute("src")) {
      shown.src = url;
      shown.dataset.step = step;
    }
    shown.hidden = false;
  } else {
    shown.hidden = true;
  }
  const video = find("video.video");
  if (prediction.status === "succeeded" && typeof prediction.output === "string") {
    // Set once: a presigned URL changes on every GET, and a new src would restart the player.
    if (!video.getAttribute("src")) video.src = prediction.output;
    video.hidden = false;
  }
  find(".error").textContent = prediction.error || "";
  const cancel = find(".cancel");
  cancel.hidden = TERMINAL.has(prediction.status);
  if ((prediction.farm || {}).cancel_requested) {
    cancel.disabled = true;
    cancel.textContent = "Canceling…";
  }
}

async function cancelJob(id, button) {
  button.disabled = true;
  button.textContent = "Canceling…";
  try {
    upsertJob(await api(`/predictions/${encodeURIComponent(id)}/cancel`, { method: "POST" }));
  } catch (error) {
    if (!(error instanceof Refused && error.status === 401)) {
      button.disabled = false;
      button.textContent = "Cancel";
      state.jobs.get(id).element.querySelector(".error").textContent = `Not canceled: ${error.message}`;
    }
  }
}

async function poll() {
  if (state.timer) clearTimeout(state.timer);
  state.timer = null;
  if (token() === null) return;
  try {
    const page = await api(`/predictions?limit=${PAGE_SIZE}`);
    const onPage = new Set();
    // Oldest first, each prepended: the list ends newest first, new jobs on top.
    for (const prediction of [...page.results].reverse()) {
      onPage.add(prediction.id);
      upsertJob(prediction, !state.jobs.has(prediction.id));
    }
    if (state.older === undefined && page.next) {
      state.older = page.next;
      $("older").hidden = false;
    }
    // Jobs shown from older pages and still running are asked for one by one.
    for (const id of state.order) {
      const shown = state.jobs.get(id).element.dataset.status;
      if (!onPage.has(id) && !TERMINAL.has(shown)) upsertJob(await api(`/predictions/${encodeURIComponent(id)}`));
    }
  } catch (error) {
    if (error instanceof Refused && error.status === 401) return;
  }
  if (token() !== null) state.timer = setTimeout(poll, POLL_MS);
}

async function loadOlder() {
  if (!state.older) return;
  const page = await api(state.older);
  for (const prediction of page.results) upsertJob(prediction, false);
  state.older = page.next;
  $("older").hidden = !page.next;
}

document.addEventListener("DOMContentLoaded", () => {
  $("sign-in-form").addEventListener("submit", signIn);
  $("sign-out").addEventListener("click", () => signOut(""));
  $("submit-form").addEventListener("submit", submitJob);
  $("older").addEventListener("click", loadOlder);
  if (token() !== null) showApp().catch(() => signOut("The gateway did not answer: sign in again."));
});
