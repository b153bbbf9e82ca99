"use strict";
(() => {
  let cpuChart, memChart, lineChart;
  async function refresh() {
    try {
      const [status, history, jobs] = await Promise.all([
        drs.get("/api/v1/status?vms=false"), drs.get("/api/v1/history"), drs.get("/api/v1/jobs?limit=10")]);
      const names = status.hosts.map((h) => h.name);
      cpuChart = drsCharts.loadBars(document.getElementById("cpu-chart"), "CPU load per host",
        names, [{label: "CPU load now", values: status.hosts.map((h) => h.cpu_load),
                 colour: "#1e88e5"}], cpuChart);
      memChart = drsCharts.loadBars(document.getElementById("mem-chart"), "Memory load per host",
        names, [{label: "memory load now", values: status.hosts.map((h) => h.mem_load),
                 colour: "#1e88e5"}], memChart);
      lineChart = drsCharts.imbalanceLine(document.getElementById("imbalance-chart"),
        "Imbalance against target, last hour", history.times.map(drs.time), "time (UTC)",
        history.imbalance, status.target, lineChart);
      document.getElementById("imbalance").textContent =
        status.imbalance === null ? "no data" : status.imbalance.toFixed(3);
      document.getElementById("verdict").textContent = status.verdict;
      document.getElementById("balancing").textContent = status.balancing.summary;
      const body = document.querySelector("#recent tbody");
      body.replaceChildren(...jobs.slice().reverse().map((j) => drs.el("tr", {},
        drs.el("td", {}, j.id), drs.el("td", {}, j.vm), drs.el("td", {}, `${j.source} → ${j.destination}`),
        drs.el("td", {class: "state " + j.state}, j.state), drs.el("td", {}, drs.ms(j.total_ms)),
        drs.el("td", {}, drs.ms(j.downtime_ms)), drs.el("td", {class: "error"}, j.error || ""))));
    } catch (e) { drs.flash(e.message, "error"); }
  }
  window.addEventListener("load", () => { refresh(); setInterval(refresh, 10000); });
})();
