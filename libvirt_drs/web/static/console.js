// Shared helpers of the console pages: API calls with the session's CSRF token, table
// rows, number formats (the charts are in charts.js, shared with the HTML reports).
"use strict";

const drs = (() => {
  const csrf = () => document.querySelector('meta[name="csrf-token"]').content;

  async function call(method, path, body) {
    const opts = {method, headers: {"Accept": "application/json"}, credentials: "same-origin"};
    if (method !== "GET") {
      opts.headers["X-CSRF-Token"] = csrf();
      if (body !== undefined) {
        opts.headers["Content-Type"] = "application/json";
        opts.body = JSON.stringify(body);
      }
    }
    const r = await fetch(path, opts);
    if (r.status === 401) { window.location = "/login"; throw new Error("logged out"); }
    const data = await r.json().catch(() => ({}));
    if (!r.ok) { throw new Error(data.error || `${method} ${path}: HTTP ${r.status}`); }
    return data;
  }

  function flash(text, kind) {
    const box = document.getElementById("flash");
    box.textContent = text;
    box.className = "flash " + (kind || "info");
    box.hidden = !text;
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else if (v !== undefined && v !== null && v !== false) node.setAttribute(k, v);
    }
    for (const c of children.flat()) {
      if (c !== null && c !== undefined) node.append(c instanceof Node ? c : String(c));
    }
    return node;
  }

  const pct = (v) => (v === null || v === undefined) ? "no data" : (v * 100).toFixed(1) + " %";
  const ms = (v) => (v === null || v === undefined) ? "" : Math.round(v) + " ms";
  const num = (v, d) => (v === null || v === undefined) ? "no data" : Number(v).toFixed(d);
  const time = (iso) => iso ? iso.slice(5, 19).replace("T", " ") : "";

  function jobRow(j) {
    const done = j.state === "succeeded";
    return el("tr", {"data-job": j.id, "data-state": j.state},
      el("td", {}, j.id), el("td", {}, j.vm), el("td", {}, `${j.source} → ${j.destination}`),
      el("td", {class: "state " + j.state}, j.state),
      el("td", {}, done ? "100 %" : (j.percent === null ? "" : j.percent.toFixed(1) + " %")),
      el("td", {}, j.mib_per_s === null ? "" : j.mib_per_s.toFixed(1)),
      el("td", {}, ms(j.total_ms)), el("td", {}, ms(j.downtime_ms)),
      el("td", {class: "error"}, j.error || ""));
  }

  return {get: (p) => call("GET", p), post: (p, b) => call("POST", p, b),
          del: (p) => call("DELETE", p), flash, el, pct, ms, num, time, jobRow};
})();
