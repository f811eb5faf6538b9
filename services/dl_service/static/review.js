// The review page: one image at a time, keyboard first (digits pick a class, Enter confirms the
// model, S skips, H toggles the heat map). The reviewer's token stays in this tab only.
const $ = (id) => document.getElementById(id);
const KEYS = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "0"];
let item = null;
let skipped = [];
let busy = false;

function headers() {
  return { Authorization: `Bearer ${sessionStorage.getItem("reviewer-token")}`, "Content-Type": "application/json" };
}

async function bodyOf(response) {
  // Errors from a proxy or a crash may be plain text: show them as they are.
  const text = await response.text();
  try { return JSON.parse(text); } catch { return { detail: text || response.statusText }; }
}

function say(text, kind) {
  $("message").className = kind;
  $("message").textContent = text;
}

function signIn(detail) {
  sessionStorage.removeItem("reviewer-token");
  item = null;
  $("item").hidden = true;
  $("signin").hidden = false;
  $("signin-status").className = "error";
  $("signin-status").textContent = detail;
}

async function loadNext() {
  const query = skipped.map((id) => `skip=${encodeURIComponent(id)}`).join("&");
  const response = await fetch(`review/next${query ? "?" + query : ""}`, { headers: headers() });
  if (response.status === 401 || response.status === 403) {
    signIn((await bodyOf(response)).detail);
    return;
  }
  if (response.status === 204) {
    $("signin").hidden = true;
    item = null;
    $("item").hidden = true;
    $("empty").hidden = false;
    say("", "muted");
    return;
  }
  const body = await bodyOf(response);
  if (!response.ok) {
    say(`Could not load the next image (${response.status}): ${body.detail}`, "error");
    return;
  }
  $("signin").hidden = true;
  say("", "muted");
  show(body);
}

function show(task) {
  item = task;
  $("empty").hidden = true;
  $("item").hidden = false;
  $("item").dataset.itemId = task.item_id;  // for support and scripts: which queue item is shown
  $("view").src = "data:image/png;base64," + task.image_png;
  $("overlay").src = "data:image/png;base64," + task.overlay_png;
  $("version").textContent = task.model_version ?? "?";
  $("predicted").textContent = task.predicted_label ?? "?";
  $("confidence").textContent = task.confidence === null ? "" : `(${(100 * task.confidence).toFixed(1)}%)`;
  $("given").hidden = task.given_label === null;
  $("given").textContent = task.given_label === null ? "" : `Its label in the dataset: ${task.given_label}`;
  $("reason").textContent = task.reason;
  $("progress").textContent = `${task.open_items} waiting · ${task.reviews_so_far} review(s) of this image so far`;
  $("confirm").disabled = task.predicted_label === null;
  $("classes").innerHTML = "";
  task.classes.forEach((name, index) => {
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.label = name;
    if (index < KEYS.length) {
      const key = document.createElement("kbd");
      key.textContent = KEYS[index];
      button.appendChild(key);
    }
    button.appendChild(document.createTextNode(name));
    button.addEventListener("click", () => submit(name));
    $("classes").appendChild(button);
  });
}

async function submit(label) {
  if (!item || busy) return;
  busy = true;
  try {
    const response = await fetch(`review/${encodeURIComponent(item.item_id)}`, {
      method: "POST", headers: headers(), body: JSON.stringify({ label }),
    });
    const body = await bodyOf(response);
    if (response.status === 401 || response.status === 403) {
      signIn(body.detail);
      return;
    }
    if (response.ok) {
      say(`Recorded "${body.label}"${body.disagreement ? " (reviewers disagree on this image)" : ""}.`, "ok");
    } else {
      say(`Not recorded (${response.status}): ${body.detail}`, "error");
    }
    if (response.ok || response.status === 409) await loadNext();
  } finally {
    busy = false;
  }
}

document.addEventListener("keydown", (event) => {
  if (!item || event.target.tagName === "INPUT" || event.ctrlKey || event.metaKey || event.altKey) return;
  const index = KEYS.indexOf(event.key);
  if (index >= 0 && index < item.classes.length) submit(item.classes[index]);
  else if (event.key === "Enter" && item.predicted_label !== null) submit(item.predicted_label);
  else if (event.key.toLowerCase() === "s") { skipped.push(item.item_id); loadNext(); }
  else if (event.key.toLowerCase() === "h") $("overlay").hidden = !$("overlay").hidden;
  else return;
  event.preventDefault();
});
$("signin").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem("reviewer-token", $("token").value);
  $("token").value = "";
  loadNext();
});
$("confirm").addEventListener("click", () => submit(item.predicted_label));
$("skip").addEventListener("click", () => { skipped.push(item.item_id); loadNext(); });
$("again").addEventListener("click", () => { skipped = []; loadNext(); });
if (sessionStorage.getItem("reviewer-token")) loadNext();
