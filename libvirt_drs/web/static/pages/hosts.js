"use strict";
(() => {
  let poll = null;

  async function load() {
    try {
      const status = await drs.get("/api/v1/status");
      document.querySelector("#host-table tbody").replaceChildren(...status.hosts.map((h) => {
        const entering = h.state !== "maintenance";
        return drs.el("tr", {"data-host": h.name},
          drs.el("td", {}, h.name), drs.el("td", {}, h.group),
          drs.el("td", {}, drs.pct(h.cpu_load)), drs.el("td", {}, drs.pct(h.mem_load)),
          drs.el("td", {class: "cpu-wait"}, h.cpu_wait_cores === null && h.vms === 0 && !h.stale
            ? "0.00 cores" : h.cpu_wait_cores === null ? "no data" : h.cpu_wait_cores.toFixed(2) + " cores"),
          drs.el("td", {}, h.vms), drs.el("td", {class: "state " + h.state}, h.state + (h.stale ? " (stale)" : "")),
          drs.el("td", {}, drs.el("button", {class: entering ? "enter" : "exit", "data-host": h.name,
            onclick: () => entering ? enter(h.name) : leave(h.name)},
            entering ? "Enter maintenance" : "Exit maintenance")));
      }));
    } catch (e) { drs.flash(e.message, "error"); }
  }

  async function detail(name) {
    const h = await drs.get(`/api/v1/hosts/${encodeURIComponent(name)}`);
    const box = document.getElementById("host-detail");
    const left = h.left.length
      ? drs.el("ul", {id: "left"}, h.left.map((x) => drs.el("li", {"data-vm": x.vm}, `${x.vm}: ${x.reason}`)))
      : drs.el("p", {id: "left-none"}, h.state === "maintenance" && !h.vm_list.length
        ? `${h.name} is in maintenance and empty.` : "");
    box.replaceChildren(drs.el("h2", {}, `${h.name}: ${h.state}, ${h.vm_list.length} VM(s)`), left);
    return h;
  }

  async function enter(name) {
    if (!window.confirm(`Put ${name} into maintenance and move its VMs away?`)) return;
    try {
      const r = await drs.post(`/api/v1/hosts/${encodeURIComponent(name)}/maintenance`);
      drs.flash(`${name}: ${r.jobs.length} migration(s) queued` +
                r.unmovable.map((u) => `; cannot move ${u.vm}: ${u.reason}`).join(""), "info");
      follow(name, r.jobs.map((j) => j.id));
    } catch (e) { drs.flash(e.message, "error"); }
  }

  function follow(name, ids) {
    clearInterval(poll);
    poll = setInterval(async () => {
      const jobs = await Promise.all(ids.map((id) => drs.get(`/api/v1/jobs/${id}`)));
      const busy = jobs.filter((j) => ["queued", "running"].includes(j.state)).length;
      document.getElementById("host-detail").replaceChildren(
        drs.el("p", {}, `${name}: ${jobs.length - busy} of ${jobs.length} migration(s) done`));
      if (!busy) { clearInterval(poll); await load(); await detail(name); }
    }, 1000);
  }

  async function leave(name) {
    if (!window.confirm(`Take ${name} out of maintenance (the balancer may move VMs onto it)?`)) return;
    try { await drs.del(`/api/v1/hosts/${encodeURIComponent(name)}/maintenance`); drs.flash(`${name} is active`, "info"); load(); }
    catch (e) { drs.flash(e.message, "error"); }
  }

  window.addEventListener("load", load);
})();
