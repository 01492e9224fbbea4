// shopformer operator console: live numbers, reload without leaving the page, and the
// explanation heatmap swapped in place. Plain JavaScript, no build step; every part
// also works without it (forms post and get as usual).
"use strict";

(function () {
  if (!document.body || !document.body.classList.contains("console")) return;
  const POLL_MS = 2000;
  const dash = "–";

  function cell(tag, text, cls) {
    const el = document.createElement(tag);
    if (cls) el.className = cls;
    el.textContent = text;
    return el;
  }

  function num(v) {
    return v === null || v === undefined ? dash : String(v);
  }

  function toLogin(response) {
    if (response.status === 401 || response.status === 403) {
      window.location.assign("/console/login");
      return true;
    }
    return false;
  }

  // -- live traffic and recent events --------------------------------------------------
  const routes = document.getElementById("live-routes");
  const events = document.getElementById("live-events");
  const updated = document.getElementById("live-updated");
  let timer = null;

  function emptyRow(text, span) {
    const tr = document.createElement("tr");
    tr.className = "empty";
    const td = cell("td", text);
    td.colSpan = span;
    tr.appendChild(td);
    return tr;
  }

  function renderRoutes(rows) {
    const body = document.createDocumentFragment();
    if (!rows.length) body.appendChild(emptyRow("No API requests yet.", 6));
    for (const r of rows) {
      const tr = document.createElement("tr");
      tr.dataset.route = r.route;
      const th = document.createElement("th");
      th.scope = "row";
      th.appendChild(cell("code", r.route));
      tr.appendChild(th);
      tr.appendChild(cell("td", num(r.rate), "num rate"));
      tr.appendChild(cell("td", num(r.p50_ms), "num"));
      tr.appendChild(cell("td", num(r.p95_ms), "num"));
      tr.appendChild(cell("td", num(r.total), "num"));
      tr.appendChild(cell("td", num(r.errors), "num"));
      body.appendChild(tr);
    }
    routes.replaceChildren(body);
  }

  function renderEvents(rows) {
    const body = document.createDocumentFragment();
    if (!rows.length) body.appendChild(emptyRow("No events stored.", 4));
    for (const e of rows) {
      const tr = document.createElement("tr");
      tr.appendChild(cell("td", e.time, "small"));
      const who = document.createElement("td");
      who.appendChild(cell("code", e.user_id));
      tr.appendChild(who);
      tr.appendChild(cell("td", e.type));
      const what = document.createElement("td");
      if (e.item_id) {
        what.appendChild(document.createTextNode((e.title || e.item_id) + " "));
        what.appendChild(cell("code", e.item_id, "small"));
      } else {
        what.textContent = "\u201c" + e.query + "\u201d";
      }
      tr.appendChild(what);
      body.appendChild(tr);
    }
    events.replaceChildren(body);
  }

  function renderModel(model) {
    if (!model) return;
    for (const key of ["name", "version", "folder", "loaded_at", "retrieval"]) {
      const dd = document.querySelector('#model-facts [data-field="' + key + '"]');
      if (!dd) continue;
      const inner = dd.firstElementChild;
      (inner || dd).textContent = model[key];
    }
  }

  async function poll() {
    timer = null;
    if (document.hidden) return; // resumed by visibilitychange
    try {
      const response = await fetch("/console/live", { headers: { Accept: "application/json" }, credentials: "same-origin", cache: "no-store" });
      if (toLogin(response)) return;
      if (response.ok) {
        const data = await response.json();
        renderRoutes(data.routes);
        renderEvents(data.events);
        renderModel(data.model);
        if (updated) {
          updated.textContent = "As of " + data.at + (data.window_s ? " (last " + data.window_s + " s)." : ".");
        }
      }
    } catch (err) {
      if (updated) updated.textContent = "Live numbers paused: the server did not answer.";
    }
    timer = window.setTimeout(poll, POLL_MS);
  }

  if (routes && events) {
    document.addEventListener("visibilitychange", function () {
      if (!document.hidden && timer === null) poll();
    });
    timer = window.setTimeout(poll, 250);
  }

  // -- reload --------------------------------------------------------------------------
  const reloadForm = document.getElementById("reload-form");
  const reloadStatus = document.getElementById("reload-status");
  if (reloadForm && reloadStatus) {
    reloadForm.addEventListener("submit", async function (ev) {
      ev.preventDefault();
      const button = document.getElementById("reload-button");
      button.disabled = true;
      reloadStatus.className = "status";
      reloadStatus.textContent = "Reloading\u2026";
      try {
        const response = await fetch(reloadForm.action, { method: "POST", headers: { Accept: "application/json" }, credentials: "same-origin" });
        if (toLogin(response)) return;
        const body = await response.json();
        if (response.ok) {
          renderModel(body.model && { name: body.model.name, version: body.model.version, folder: body.model.run,
                                      loaded_at: body.model.loaded_at, retrieval: body.model.retrieval });
          reloadStatus.className = "status ok";
          reloadStatus.textContent = "Reloaded: now serving " + body.model.version + " (was " + (body.previous ? body.previous.version : "none") + ").";
        } else {
          reloadStatus.className = "status bad";
          reloadStatus.textContent = "Reload failed: " + (body.detail || response.status);
        }
      } catch (err) {
        reloadStatus.className = "status bad";
        reloadStatus.textContent = "Reload failed: the server did not answer.";
      } finally {
        button.disabled = false;
      }
    });
  }

  // -- explanation heatmap ---------------------------------------------------------------
  const explainForm = document.getElementById("explain-form");
  const explainResult = document.getElementById("explain-result");
  if (explainForm && explainResult) {
    explainForm.addEventListener("submit", async function (ev) {
      ev.preventDefault();
      const user = explainForm.elements.user_id.value.trim();
      if (!user) return;
      const button = explainForm.querySelector("button");
      button.disabled = true;
      explainResult.setAttribute("aria-busy", "true");
      try {
        const response = await fetch("/console/explain?user_id=" + encodeURIComponent(user), { credentials: "same-origin", cache: "no-store" });
        if (toLogin(response)) return;
        if (!response.ok) throw new Error("HTTP " + response.status);
        // our own server-rendered fragment (Jinja2 autoescaped)
        explainResult.innerHTML = await response.text();
        window.history.replaceState(null, "", "/console?user_id=" + encodeURIComponent(user) + "#explain");
        const heading = document.getElementById("heatmap-title");
        if (heading) heading.focus();
      } catch (err) {
        explainResult.replaceChildren(cell("p", "Could not explain: " + err.message, "alert"));
      } finally {
        button.disabled = false;
        explainResult.removeAttribute("aria-busy");
      }
    });
  }
})();
