// The charts of the console and of the HTML reports (drs recommend, drs demo), on
// Chart.js (vendor/chart.umd.min.js): load per host against capacity, with a line at
// 100 %, and the imbalance over time against its target. Axes, values and full titles.
"use strict";

const drsCharts = (() => {
  // values printed over each bar, so the chart reads without hovering
  const barValues = {
    id: "barValues",
    afterDatasetsDraw(chart) {
      const ctx = chart.ctx;
      ctx.save();
      ctx.font = "12px sans-serif";
      ctx.fillStyle = "#222";
      ctx.textAlign = "center";
      chart.data.datasets.forEach((ds, i) => {
        if (ds.type === "line") return;
        chart.getDatasetMeta(i).data.forEach((bar, j) => {
          const v = ds.data[j];
          if (v === null || v === undefined) return;
          ctx.fillText(v.toFixed(0) + " %", bar.x, bar.y - 4);
        });
      });
      ctx.restore();
    },
  };
  const colour = (v, base) => v === null ? "#bbb" : v > 100 ? "#c62828" : v > 90 ? "#ef6c00" : base;

  // series: [{label, values (0..1+ of capacity, null = no data), colour}]
  function loadBars(canvas, title, hosts, series, old) {
    if (old) old.destroy();
    const missing = (i) => series.every((s) => s.values[i] === null);
    const labels = hosts.map((h, i) => missing(i) ? `${h} (no data)` : h);
    const sets = series.map((s) => {
      const data = s.values.map((v) => v === null ? null : v * 100);
      return {type: "bar", label: s.label, data,
              backgroundColor: series.length > 1 ? s.colour : data.map((v) => colour(v, s.colour))};
    });
    const all = sets.flatMap((s) => s.data).filter((v) => v !== null);
    sets.push({type: "line", label: "100 % of capacity", data: labels.map(() => 100),
               borderColor: "#c62828", borderDash: [6, 4], pointRadius: 0, borderWidth: 2});
    return new Chart(canvas, {
      data: {labels, datasets: sets},
      options: {animation: false, maintainAspectRatio: false,
        plugins: {title: {display: true, text: title}, legend: {position: "bottom"}},
        scales: {y: {min: 0, max: Math.ceil(Math.max(110, ...all.map((v) => v + 15)) / 10) * 10,
                     title: {display: true, text: "% of capacity"}},
                 x: {title: {display: true, text: "host"}}}},
      plugins: [barValues],
    });
  }

  function imbalanceLine(canvas, title, labels, xTitle, values, target, old) {
    if (old) old.destroy();
    const datasets = [{label: "imbalance", data: values, borderColor: "#1e88e5",
                       backgroundColor: "#1e88e5", spanGaps: false, pointRadius: 2,
                       borderWidth: 2}];
    if (target !== null && target !== undefined) {
      datasets.push({label: `target ${target.toFixed(3)}`, data: labels.map(() => target),
                     borderColor: "#2e7d32", borderDash: [6, 4], pointRadius: 0, borderWidth: 2});
    }
    const top = Math.max(target || 0, ...values.filter((v) => v !== null)) * 1.2 || 0.1;
    return new Chart(canvas, {type: "line", data: {labels, datasets},
      options: {animation: false, maintainAspectRatio: false,
        plugins: {title: {display: true, text: title}, legend: {position: "bottom"}},
        scales: {y: {min: 0, suggestedMax: top,
                     title: {display: true, text: "imbalance (std-dev of host load)"}},
                 x: {title: {display: true, text: xTitle}, ticks: {maxTicksLimit: 12}}}}});
  }

  // a report's charts: <script type="application/json" id="drs-charts">[spec, ...]</script>
  function renderSpecs() {
    const node = document.getElementById("drs-charts");
    if (!node) return;
    for (const spec of JSON.parse(node.textContent)) {
      const canvas = document.getElementById(spec.canvas);
      if (spec.kind === "load") loadBars(canvas, spec.title, spec.hosts, spec.series);
      else imbalanceLine(canvas, spec.title, spec.labels, spec.x_title, spec.values, spec.target);
    }
  }
  window.addEventListener("load", renderSpecs);

  return {loadBars, imbalanceLine};
})();
