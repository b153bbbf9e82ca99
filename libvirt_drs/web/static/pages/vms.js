"use strict";
(() => {
  let sort = "name", order = "asc", vms = [];
  let chosen = null, current = null, poll = null;

  async function load() {
    const q = encodeURIComponent(document.getElementById("vm-search").value);
    try {
      const data = await drs.get(`/api/v1/vms?search=${q}&sort=${sort}&order=${order}&limit=2000`);
      vms = data.vms;
      document.getElementById("vm-count").textContent = `${data.total} VM(s)`;
      document.querySelector("#vm-table tbody").replaceChildren(...vms.map((v) =>
        drs.el("tr", {"data-vm": v.name},
          drs.el("td", {}, v.name), drs.el("td", {}, v.host || "-"),
          drs.el("td", {}, drs.num(v.cpu_cores, 2)), drs.el("td", {class: "cpu-wait"}, drs.pct(v.cpu_wait)),
          drs.el("td", {}, drs.num(v.mem_mib, 0)),
          drs.el("td", {}, v.vcpus), drs.el("td", {class: "rules"}, v.rules.join("; ")),
          drs.el("td", {}, drs.el("button", {class: "migrate", "data-vm": v.name,
                                             onclick: () => openDialog(v.name)}, "Migrate")))));
    } catch (e) { drs.flash(e.message, "error"); }
  }

  function checkList(t) {
    return drs.el("ul", {class: "checks"}, t.checks.map((c) => drs.el("li",
      {class: "check " + c.status, title: c.detail}, `${c.name}: ${c.status}`,
      c.status === "pass" ? "" : ` (${c.detail})`)));
  }

  async function openDialog(vm) {
    current = vm; chosen = null;
    const dlg = document.getElementById("migrate-dialog");
    document.getElementById("m-vm").textContent = vm;
    document.getElementById("m-progress").hidden = true;
    document.getElementById("m-go").disabled = true;
    document.querySelector("#m-targets tbody").replaceChildren(
      drs.el("tr", {}, drs.el("td", {colspan: 6}, "running the pre-checks on every host...")));
    dlg.showModal();
    try {
      const data = await drs.get(`/api/v1/vms/${encodeURIComponent(vm)}/targets`);
      document.getElementById("m-source").textContent = data.source;
      document.querySelector("#m-targets tbody").replaceChildren(...data.targets.map((t) =>
        drs.el("tr", {"data-target": t.host, class: t.ok ? "ok" : "refused"},
          drs.el("td", {}, drs.el("input", {type: "radio", name: "target", value: t.host,
            disabled: !t.ok, onchange: () => { chosen = t.host;
              document.getElementById("m-go").disabled = false; }})),
          drs.el("td", {}, t.host), drs.el("td", {}, t.state),
          drs.el("td", {}, t.free_cpu_cores === null ? "no data" : t.free_cpu_cores.toFixed(2) + " cores"),
          drs.el("td", {}, t.free_mem_mib === null ? "no data" : t.free_mem_mib.toFixed(0) + " MiB"),
          drs.el("td", {}, checkList(t)))));
    } catch (e) { drs.flash(e.message, "error"); }
  }

  async function go() {
    if (!chosen || !window.confirm(`Live-migrate ${current} to ${chosen}?`)) return;
    document.getElementById("m-go").disabled = true;
    try {
      const job = await drs.post("/api/v1/migrations", {vm: current, destination: chosen});
      document.getElementById("m-progress").hidden = false;
      follow(job.id);
    } catch (e) { drs.flash(e.message, "error"); }
  }

  function follow(id) {
    clearInterval(poll);
    poll = setInterval(async () => {
      const j = await drs.get(`/api/v1/jobs/${id}`);
      document.getElementById("m-state").textContent = `job ${j.id}: ${j.state}`;
      document.getElementById("m-state").dataset.state = j.state;
      document.getElementById("m-bar").value = j.percent || 0;
      const left = j.bytes_remaining === null ? "" : `, ${(j.bytes_remaining / 1048576).toFixed(1)} MiB left`;
      document.getElementById("m-figures").textContent = j.state === "succeeded"
        ? `done in ${drs.ms(j.total_ms)}, downtime ${drs.ms(j.downtime_ms)}, ${((j.bytes || 0) / 1048576).toFixed(1)} MiB moved`
        : `${j.percent === null ? 0 : j.percent.toFixed(1)} %` +
          (j.mib_per_s === null ? "" : `, ${j.mib_per_s.toFixed(1)} MiB/s`) + left +
          (j.error ? ` — ${j.error}` : "");
      if (!["queued", "running"].includes(j.state)) { clearInterval(poll); load(); }
    }, 500);
  }

  window.addEventListener("load", () => {
    document.getElementById("vm-search").addEventListener("input", load);
    document.querySelectorAll("#vm-table th[data-sort]").forEach((th) => th.addEventListener("click", () => {
      order = (sort === th.dataset.sort && order === "asc") ? "desc" : "asc";
      sort = th.dataset.sort; load();
    }));
    document.getElementById("m-go").addEventListener("click", go);
    document.getElementById("m-close").addEventListener("click", () => {
      clearInterval(poll); document.getElementById("migrate-dialog").close(); });
    load();
  });
})();
