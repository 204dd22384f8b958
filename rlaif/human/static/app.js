// The annotation page: sign in with a token once, then label one pair at a time with buttons or keys.
// Prompts and responses are model outputs, i.e. untrusted: they reach the page only through textContent,
// never innerHTML, so markup in them shows as characters and runs nothing.
"use strict";

const TOKEN_KEY = "rlaif.annotate.token";
const $ = (id) => document.getElementById(id);
const KEYS = { "1": "a", a: "a", "2": "b", b: "b", "3": "tie", t: "tie", " ": "skip", s: "skip" };
const CHOICE_NAMES = { a: "A", b: "B", tie: "tie", skip: "skip" };

let current = null;   // the pair on screen
let previous = null;  // {pair, choice}: the last answer, which "change previous" reopens
let busy = false;

class AuthError extends Error {}

function show(section) {
  for (const id of ["login", "work", "done"]) $(id).hidden = id !== section;
  $("sign-out").hidden = section === "login";
}

function showLogin(message) {
  localStorage.removeItem(TOKEN_KEY);
  $("login-error").textContent = message || "";
  $("progress").textContent = "";
  show("login");
  $("token").focus();
}

async function api(method, path, body) {
  const headers = { Authorization: "Bearer " + localStorage.getItem(TOKEN_KEY) };
  const init = { method, headers };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  if (res.status === 401) throw new AuthError("That token was not accepted.");
  if (res.status === 204) return null;
  const data = await res.json().catch(() => null);
  if (!res.ok) {
    const detail = data && data.detail;
    throw new Error(typeof detail === "string" ? detail : res.status + " " + res.statusText);
  }
  return data;
}

function renderPrompt(prompt) {
  const box = $("prompt");
  box.replaceChildren();
  if (typeof prompt === "string") {
    box.textContent = prompt;
    return;
  }
  for (const message of prompt) {
    const item = document.createElement("div");
    item.className = "message";
    const role = document.createElement("span");
    role.className = "role";
    role.textContent = message.role;
    const content = document.createElement("div");
    content.textContent = message.content;
    item.append(role, content);
    box.append(item);
  }
}

function render(pair, note) {
  current = pair;
  $("question").textContent = pair.principle || "Which response is better?";
  renderPrompt(pair.prompt);
  $("response-left").textContent = pair.response_a;
  $("response-right").textContent = pair.response_b;
  $("revising").hidden = !note;
  $("revising").textContent = note || "";
  $("work").dataset.pairId = pair.pair_id;
  $("back").disabled = !previous || Boolean(note);
  show("work");
}

async function refreshProgress() {
  const p = await api("GET", "/api/progress");
  const all = p.overall;
  $("progress").textContent = `${p.annotator}: ${p.done} labelled, ${p.skipped} skipped, ${p.remaining} left` +
    ` · all annotators: ${all.complete} of ${all.pairs} pairs complete (${all.overlap} label(s) each)`;
}

async function loadNext() {
  const pair = await api("GET", "/api/pairs/next");
  if (pair === null) {
    current = null;
    delete $("work").dataset.pairId;
    show("done");
  } else {
    render(pair);
  }
  await refreshProgress();
}

// Runs one request at a time: a second key press while a label is being saved must not post twice.
async function guarded(action) {
  if (busy) return;
  busy = true;
  $("status").textContent = "";
  for (const b of document.querySelectorAll(".choices button")) b.disabled = true;
  try {
    await action();
  } catch (e) {
    if (e instanceof AuthError) showLogin(e.message);
    else $("status").textContent = "Not saved: " + e.message + " (try again)";
  } finally {
    busy = false;
    for (const b of document.querySelectorAll(".choices button[data-choice]")) b.disabled = false;
    $("back").disabled = !previous || !$("revising").hidden;
  }
}

function submit(choice) {
  if (!current) return;
  const pair = current;
  return guarded(async () => {
    await api("POST", "/api/labels", { pair_id: pair.pair_id, choice });
    previous = { pair, choice };
    await loadNext();
  });
}

function changePrevious() {
  if (!previous || busy) return;
  render(previous.pair, `Changing your earlier answer (${CHOICE_NAMES[previous.choice]}): choose again.`);
}

$("login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  localStorage.setItem(TOKEN_KEY, $("token").value.trim());
  $("token").value = "";
  guarded(loadNext);
});
$("sign-out").addEventListener("click", () => showLogin(""));
$("again").addEventListener("click", () => guarded(loadNext));
$("back").addEventListener("click", () => {
  $("back").blur();
  changePrevious();
});
for (const button of document.querySelectorAll(".choices button[data-choice]")) {
  button.addEventListener("click", () => {
    button.blur();  // a focused button would be pressed again by the next space or Enter
    submit(button.dataset.choice);
  });
}
document.addEventListener("keydown", (event) => {
  if ($("work").hidden || event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
  if (event.target instanceof HTMLInputElement) return;
  const key = event.key.toLowerCase();
  if (key === "z") {
    changePrevious();
  } else if (KEYS[key]) {
    event.preventDefault();  // space would otherwise scroll the page or press the focused button
    submit(KEYS[key]);
  }
});

if (localStorage.getItem(TOKEN_KEY)) guarded(loadNext);
else showLogin("");
