// The storefront's script (plain JavaScript, no build step). The pages work without it
// (forms post and redirect back); with it:
//  * every action (a page's view or click, add to cart, remove, buy, a search) is posted
//    to /shop/events and the "recommended" panel is replaced by the one the server
//    recomputed from it, new items marked; timings go to window.sfTimings;
//  * the search box suggests as you type (an ARIA combobox: arrows, Enter, Escape);
//  * a product image that fails to load falls back to its placeholder.
"use strict";

(function () {
  const timings = (window.sfTimings = []);
  const status = document.getElementById("sf-status");

  function say(text, bad) {
    if (!status) return;
    status.textContent = text;
    status.classList.toggle("error", !!bad);
  }

  function shownItems() {
    const panel = document.getElementById("recs");
    return panel ? panel.dataset.items || "" : "";
  }

  function describe(payload) {
    const what = { view: "view", click: "click", add_to_cart: "add to cart", remove_from_cart: "removal",
                   purchase: "purchase", search: "search" }[payload.type] || payload.type;
    return what;
  }

  // Post one action; swap in the recommendations the server recomputed from it.
  async function post(payload) {
    const started = performance.now();
    let answer;
    try {
      const response = await fetch("/shop/events", {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-Shown-Items": shownItems() },
        body: JSON.stringify(payload),
      });
      answer = await response.json();
      if (!response.ok) {
        say(typeof answer.detail === "string" ? answer.detail : "That did not work.", true);
        return null;
      }
    } catch (err) {
      console.error("storefront: could not post the event", err);
      say("Could not reach the shop; try again.", true);
      return null;
    }
    const panel = document.getElementById("recs");
    if (panel && answer.recs_html) {
      const box = document.createElement("div");
      box.innerHTML = answer.recs_html;
      const fresh = box.firstElementChild;
      if (fresh) {
        panel.replaceWith(fresh);
        fresh.classList.add("updated");
        watchImages(fresh);
      }
    }
    const badge = document.getElementById("cart-count");
    if (badge && String(answer.cart_count) !== badge.textContent) {
      badge.textContent = String(answer.cart_count);
      badge.classList.remove("bump");
      void badge.offsetWidth;
      badge.classList.add("bump");
    }
    const ms = performance.now() - started;
    timings.push({ type: payload.type, ms: ms });
    const added = document.querySelectorAll("#recs .card.is-new").length;
    say(answer.message + (answer.changed
      ? " Recommendations updated from your " + describe(payload) + (added ? " (" + added + " new)" : " (new order)") + "."
      : " Recommendations checked after your " + describe(payload) + ": no change."));
    return answer;
  }

  // -- actions --------------------------------------------------------------------------
  function onPageLoad() {
    const main = document.getElementById("main");
    const kind = main && main.dataset.event;
    if (!kind) return;
    if (kind === "search") post({ type: "search", query: main.dataset.query });
    else post(main.dataset.rid ? { type: kind, item_id: main.dataset.item, request_id: main.dataset.rid }
                                 : { type: kind, item_id: main.dataset.item });
  }

  function cartTotal() {
    const total = document.querySelector(".cart .total b");
    if (!total) return;
    let sum = 0;
    document.querySelectorAll(".cart-line").forEach(function (line) {
      sum += Number(line.dataset.price || 0) * Number(line.dataset.qty || 0);
    });
    total.textContent = sum.toLocaleString(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  }

  document.addEventListener("submit", async function (event) {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.classList.contains("js-event")) return;
    event.preventDefault();
    const data = new FormData(form);
    const payload = { type: data.get("type") };
    if (data.get("item_id")) payload.item_id = data.get("item_id");
    if (data.get("request_id")) payload.request_id = data.get("request_id");
    const button = form.querySelector("button");
    if (button) button.disabled = true;
    const answer = await post(payload);
    if (button) button.disabled = false;
    if (!answer) return;
    if (payload.type === "remove_from_cart") {
      const line = form.closest(".cart-line");
      if (line) line.remove();
      cartTotal();
    } else if (payload.type === "purchase") {
      const cart = document.querySelector(".cart");
      if (cart) {
        cart.querySelectorAll(".cart-lines, .total, .checkout").forEach(function (el) { el.remove(); });
        const done = document.createElement("p");
        done.className = "note thanks";
        done.textContent = "Thank you: your purchase is recorded.";
        cart.appendChild(done);
      }
    }
  });

  // -- product images -------------------------------------------------------------------
  function watchImages(root) {
    root.querySelectorAll("img.thumb-img").forEach(function (img) {
      const broken = function () { img.classList.add("broken"); };
      if (img.complete && img.naturalWidth === 0 && img.getAttribute("src")) broken();
      else img.addEventListener("error", broken, { once: true });
    });
  }

  // -- autocomplete (ARIA 1.2 combobox with a listbox popup) -----------------------------
  function combobox(input) {
    const list = document.getElementById(input.getAttribute("aria-controls"));
    let options = [];
    let active = -1;
    let timer = 0;
    let asked = 0;

    function close() {
      list.hidden = true;
      input.setAttribute("aria-expanded", "false");
      input.removeAttribute("aria-activedescendant");
      active = -1;
    }

    function highlight(i) {
      active = i;
      list.querySelectorAll("li").forEach(function (li, j) { li.setAttribute("aria-selected", String(j === i)); });
      if (i >= 0) input.setAttribute("aria-activedescendant", "sf-opt-" + i);
      else input.removeAttribute("aria-activedescendant");
    }

    function choose(i) {
      const picked = options[i];
      if (!picked) return;
      if (picked.kind === "product" && picked.item_id) {
        window.location.href = "/p/" + encodeURIComponent(picked.item_id) + "?via=search";
        return;
      }
      input.value = picked.text;
      close();
      input.form.submit();
    }

    function render(found, text) {
      options = found;
      list.dataset.query = text || "";
      list.textContent = "";
      found.forEach(function (s, i) {
        const li = document.createElement("li");
        li.id = "sf-opt-" + i;
        li.setAttribute("role", "option");
        li.setAttribute("aria-selected", "false");
        li.textContent = s.text;
        if (s.kind === "product") {
          const kind = document.createElement("span");
          kind.className = "kind";
          kind.textContent = "product";
          li.appendChild(kind);
        }
        li.addEventListener("mousedown", function (e) { e.preventDefault(); choose(i); });
        list.appendChild(li);
      });
      list.hidden = found.length === 0;
      input.setAttribute("aria-expanded", String(found.length > 0));
      active = -1;
    }

    async function ask() {
      const text = input.value;
      const mine = ++asked;
      if (!text.trim()) { render([]); return; }
      try {
        const response = await fetch("/shop/suggest?q=" + encodeURIComponent(text), { credentials: "same-origin" });
        const body = await response.json();
        if (mine === asked) render(body.suggestions || [], text);
      } catch (err) {
        console.error("storefront: suggestions failed", err);
      }
    }

    input.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(ask, 60);
    });
    input.addEventListener("keydown", function (e) {
      if (e.key === "ArrowDown" || e.key === "ArrowUp") {
        if (list.hidden) { ask(); return; }
        e.preventDefault();
        const n = options.length;
        if (!n) return;
        highlight(e.key === "ArrowDown" ? (active + 1) % n : (active - 1 + n) % n);
      } else if (e.key === "Enter" && active >= 0 && !list.hidden) {
        e.preventDefault();
        choose(active);
      } else if (e.key === "Escape") {
        close();
      }
    });
    input.addEventListener("blur", function () { setTimeout(close, 100); });
  }

  document.querySelectorAll('input[role="combobox"]').forEach(combobox);
  watchImages(document);
  onPageLoad();
})();
