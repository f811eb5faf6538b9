const $ = (id) => document.getElementById(id);
let current = null;

async function checkModel() {
  const response = await fetch("ready");
  const body = await response.json();
  $("model").textContent = body.ready
    ? `Model ${body.model_name}, version ${body.model_version}`
    : `No model yet: ${body.detail}`;
}

function showPrediction(p) {
  current = p;
  $("result").hidden = false;
  $("view").src = "data:image/png;base64," + p.image_png;
  $("heat").src = "data:image/png;base64," + p.heatmap_png;
  $("heat").style.opacity = $("opacity").value / 100;
  $("label").textContent = p.label;
  $("confidence").textContent = `(${(100 * p.confidence).toFixed(1)}%)`;
  $("version").textContent = `${p.model_name} version ${p.model_version} · prediction ${p.prediction_id}`;
  $("topk").innerHTML = "";
  for (const item of p.top_k) {
    const row = $("topk").insertRow();
    row.insertCell().textContent = item.label;
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.style.width = Math.max(2, 160 * item.probability) + "px";
    row.insertCell().appendChild(bar);
    row.insertCell().textContent = (100 * item.probability).toFixed(1) + "%";
  }
  showTrust(p);
  $("truth").innerHTML = "";
  for (const name of Object.keys(p.probabilities)) {
    $("truth").add(new Option(name, name, name === p.label, name === p.label));
  }
  $("feedback").textContent = "";
}

function showTrust(p) {
  // A version without a trust layer answers with no set and no flag.
  $("trust").hidden = p.prediction_set === null;
  if (p.prediction_set === null) return;
  const size = p.prediction_set.length;
  $("set").textContent = `${p.prediction_set.join(", ")} (${size === 1 ? "one class" : size + " classes"})`;
  $("ood").className = p.ood ? "error" : "muted";
  $("ood").textContent = p.ood
    ? `Out of distribution: unlike the training images (score ${p.ood_score.toFixed(3)})`
    : `Like the training images (score ${p.ood_score.toFixed(3)})`;
  $("abstain").hidden = !p.abstain;
  $("abstain").textContent = p.abstain ? `Do not act on this answer alone: ${p.abstain_reason}` : "";
}

async function upload(file) {
  $("status").className = "muted";
  $("status").textContent = "Classifying…";
  const form = new FormData();
  form.append("file", file);
  const response = await fetch("explain", { method: "POST", body: form });
  const body = await response.json();
  if (!response.ok) {
    $("status").className = "error";
    $("status").textContent = `Refused (${response.status}): ${body.detail}`;
    return;
  }
  $("status").textContent = "";
  showPrediction(body);
}

async function sendFeedback(label) {
  const response = await fetch(`feedback/${current.prediction_id}`, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ label }),
  });
  const body = await response.json();
  $("feedback").className = response.ok ? "ok" : "error";
  $("feedback").textContent = response.ok ? `Thank you: recorded "${body.label}".` : `Not recorded: ${body.detail}`;
}

$("file").addEventListener("change", (event) => event.target.files[0] && upload(event.target.files[0]));
$("opacity").addEventListener("input", () => { $("heat").style.opacity = $("opacity").value / 100; });
$("confirm").addEventListener("click", () => sendFeedback(current.label));
$("correct").addEventListener("click", () => sendFeedback($("truth").value));
checkModel();
