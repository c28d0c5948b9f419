// mmembed search page: plain JavaScript, no build step. Talks to POST /search with multipart form data.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const form = $("search"), q = $("q"), fileInput = $("file"), drop = $("drop"), preview = $("preview");
  const fileName = $("file-name"), clearBtn = $("clear-image"), results = $("results");
  const statusEl = $("status"), errorEl = $("error");
  let imageBlob = null;  // the query image: from the picker, a drop or a paste
  let imageUrl = null;

  function setImage(blob, name) {
    if (imageUrl) URL.revokeObjectURL(imageUrl);
    imageBlob = blob;
    imageUrl = blob ? URL.createObjectURL(blob) : null;
    if (blob) {
      preview.hidden = false;
      preview.src = imageUrl;
      preview.alt = "query image " + (name || "");
      fileName.textContent = name || "pasted image";
      fileName.hidden = false;
      clearBtn.hidden = false;
      drop.classList.add("has-image");
    } else {
      preview.hidden = true;
      preview.removeAttribute("src");
      fileName.hidden = true;
      clearBtn.hidden = true;
      fileInput.value = "";
      drop.classList.remove("has-image");
    }
  }
  preview.addEventListener("error", () => { preview.hidden = true; });

  fileInput.addEventListener("change", () => {
    const f = fileInput.files && fileInput.files[0];
    setImage(f || null, f ? f.name : "");
  });
  clearBtn.addEventListener("click", () => { setImage(null); fileInput.focus(); });
  ["dragenter", "dragover"].forEach((t) => drop.addEventListener(t, (e) => {
    e.preventDefault(); drop.classList.add("dragging");
  }));
  ["dragleave", "drop"].forEach((t) => drop.addEventListener(t, () => drop.classList.remove("dragging")));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    const f = e.dataTransfer && e.dataTransfer.files && e.dataTransfer.files[0];
    if (f) setImage(f, f.name);
  });
  document.addEventListener("paste", (e) => {
    const items = (e.clipboardData && e.clipboardData.items) || [];
    for (const it of items) {
      if (it.kind === "file") {
        const f = it.getAsFile();
        if (f) { setImage(f, f.name || "pasted image"); e.preventDefault(); return; }
      }
    }
  });

  function showError(message) {
    errorEl.textContent = message;
    errorEl.hidden = !message;
  }

  function fmt(x) { return typeof x === "number" ? x.toFixed(3) : "–"; }

  function card(hit) {
    const li = document.createElement("li");
    li.className = "card " + (hit.modality === "text" ? "is-text" : "is-image");
    const link = hit.images.find((im) => im.url);
    const fig = document.createElement("figure");
    if (link) {
      const img = document.createElement("img");
      img.className = "thumb";
      img.loading = "lazy";
      img.decoding = "async";
      img.src = link.url;
      img.alt = hit.caption || hit.text || link.name;
      fig.appendChild(img);
    } else if (hit.images.length) {
      const p = document.createElement("p");
      p.className = "no-thumb";
      p.textContent = hit.images[0].note || "image not served";
      fig.appendChild(p);
    } else {
      const p = document.createElement("p");
      p.className = "doc-text";
      p.textContent = hit.text || "(no text)";
      fig.appendChild(p);
    }
    const cap = document.createElement("figcaption");
    const title = document.createElement("span");
    title.className = "caption";
    // a text card already shows its text: its caption line names the item instead of repeating it
    title.textContent = link || hit.images.length ? (hit.caption || hit.text || hit.images[0].name)
      : (hit.caption && hit.caption !== hit.text ? hit.caption : hit.id);
    cap.appendChild(title);
    const meta = document.createElement("span");
    meta.className = "meta";
    const bits = ["#" + hit.rank, hit.modality || "", "score " + fmt(hit.score)];
    if (hit.rerank_score !== null && hit.rerank_score !== undefined) bits.push("rerank " + fmt(hit.rerank_score));
    if (hit.page !== null && hit.page !== undefined) bits.push("page " + hit.page);
    meta.textContent = bits.filter(Boolean).join(" · ");
    cap.appendChild(meta);
    fig.appendChild(cap);
    const a = document.createElement("a");
    a.href = link ? link.url + "&size=512" : hit.item_url;  // a larger view of the image, or the item as JSON
    a.className = "card-link";
    a.setAttribute("aria-label", "result " + hit.rank + ": " + (title.textContent || hit.id));
    a.appendChild(fig);
    li.appendChild(a);
    li.dataset.id = hit.id;
    li.dataset.modality = hit.modality || "";
    return li;
  }

  let latest = 0;    // only the newest search may draw its answer (an older, slower one is dropped)
  let finished = 0;  // searches finished, drawn or refused; exposed as data-done for tests and tools

  function finish() { results.dataset.done = String(++finished); }

  async function search(e) {
    if (e) e.preventDefault();
    const mine = ++latest;
    showError("");
    const text = q.value.trim();
    const goal = form.querySelector("input[name=goal]:checked").value;
    if (!text && !imageBlob) { showError("Type some words, add an image, or both."); q.focus(); finish(); return; }
    if (goal === "edit" && !(text && imageBlob)) {
      showError("“Images like this one, changed by my words” needs an image and words describing the change.");
      finish();
      return;
    }
    const data = new FormData();
    if (text) data.append("text", text);
    if (imageBlob) data.append("image", imageBlob, imageBlob.name || "pasted.png");
    data.append("goal", goal);
    data.append("k", $("k").value);
    if ($("rerank").checked) data.append("rerank", "true");
    const coll = $("collection").value;
    if (coll) data.append("collection", coll);
    const filter = $("filter").value.trim();
    if (filter) data.append("filter", filter);
    form.setAttribute("aria-busy", "true");
    statusEl.textContent = "Searching…";
    try {
      const resp = await fetch("/search", { method: "POST", body: data });
      let body = null;
      try { body = await resp.json(); } catch (_) { body = null; }
      if (mine !== latest) return;
      if (!resp.ok) {
        const msg = body && body.error ? body.error : "search failed (HTTP " + resp.status + ")";
        showError(msg);
        statusEl.textContent = "";
        return;
      }
      results.replaceChildren(...body.hits.map(card));
      const how = body.task ? "task " + body.task : "no task";
      statusEl.textContent = body.hits.length + " results from " + body.collection + " (" + how +
        (body.reranked ? ", reranked" : "") + ", " + Math.round(body.took_ms) + " ms)";
    } catch (err) {
      if (mine !== latest) return;
      showError("The server could not be reached: " + err.message);
      statusEl.textContent = "";
    } finally {
      if (mine === latest) {
        form.removeAttribute("aria-busy");
        finish();
      }
    }
  }
  form.addEventListener("submit", search);
  // switching what to find re-runs the last search, so the change is visible at once
  form.querySelectorAll("input[name=goal]").forEach((r) => r.addEventListener("change", () => {
    if (results.children.length && (q.value.trim() || imageBlob)) search();
  }));

  let health = null;
  function showServed() {
    if (!health) return;
    const name = $("collection").value || health.default;
    const c = health.collections[name];
    $("served").textContent = name + " · " + (c ? c.count : "?") + " items · " + health.encoder;
  }
  $("collection").addEventListener("change", () => {
    showServed();
    if (results.children.length && (q.value.trim() || imageBlob)) search();
  });

  fetch("/health").then((r) => r.json()).then((h) => {
    health = h;
    const sel = $("collection");
    const names = Object.keys(h.collections || {});
    names.forEach((n) => {
      const o = document.createElement("option");
      o.value = n; o.textContent = n + " (" + h.collections[n].count + ")";
      if (n === h.default) o.selected = true;
      sel.appendChild(o);
    });
    $("collection-wrap").hidden = names.length < 2;
    if (!h.reranker) $("rerank").closest("label").hidden = true;  // started with --reranker none
    showServed();
  }).catch(() => {});
})();
