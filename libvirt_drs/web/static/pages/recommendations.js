"use strict";
(() => {
  let poll = null;

  function moveRow(plan, m) {
    const applied = ["queued", "running", "succeeded"].includes(m.job_state);
    return drs.el("tr", {"data-vm": m.vm},
      drs.el("td", {}, m.vm), drs.el("td", {}, `${m.source} → ${m.destination}`),
      drs.el("td", {}, m.kind), drs.el("td", {class: "reason"}, m.reason),
      drs.el("td", {}, `${drs.num(m.imbalance_before, 4)} → ${drs.num(m.imbalance_after, 4)}`),
      drs.el("td", {class: "state " + (m.job_state || "")}, m.job_state || "not applied"),
      drs.el("td", {}, applied ? "" : drs.el("button", {class: "apply-one", "data-vm": m.vm,
        onclick: () => apply(plan.id, m.vm)}, "Apply")));
  }

  function render(plan) {
    const box = document.getElementById("plan");
    if (!plan) { box.replaceChildren(drs.el("p", {}, "No recommendation recorded yet.")); return; }
    const head = drs.el("p", {id: "plan-summary", "data-plan": plan.id},
      `Plan ${plan.id} (${plan.trigger}, ${plan.created_at}): imbalance `,
      `${drs.num(plan.imbalance_before, 4)} → ${drs.num(plan.imbalance_after, 4)}`,
      plan.target === null ? "" : ` (target ${plan.target.toFixed(4)})`,
      plan.applied_at ? `; applied by ${plan.applied_by}` : "");
    const notes = drs.el("ul", {class: "notes"}, plan.notes.map((n) => drs.el("li", {}, n)));
    const table = drs.el("table", {id: "moves"},
      drs.el("thead", {}, drs.el("tr", {}, ["VM", "move", "kind", "reason", "imbalance",
        "job", ""].map((h) => drs.el("th", {}, h)))),
      drs.el("tbody", {}, plan.moves.map((m) => moveRow(plan, m))));
    const all = drs.el("button", {id: "apply-all", onclick: () => apply(plan.id, null),
      disabled: plan.moves.every((m) => m.job_state) || !plan.moves.length}, "Apply all");
    box.replaceChildren(head, plan.moves.length ? table : drs.el("p", {}, "Nothing to move."),
                        notes, all);
  }

  async function load() {
    try {
      const plans = await drs.get("/api/v1/plans?mode=manual&limit=1");
      render(plans[0]);
      const busy = plans[0] && plans[0].moves.some((m) => ["queued", "running"].includes(m.job_state));
      clearTimeout(poll);
      if (busy) poll = setTimeout(load, 1000);
    } catch (e) { drs.flash(e.message, "error"); }
  }

  async function apply(planId, vm) {
    const what = vm ? `the move of ${vm}` : `every move of plan ${planId}`;
    if (!window.confirm(`Apply ${what}?`)) return;
    try {
      const r = await drs.post(`/api/v1/plans/${planId}/apply`, vm ? {vm} : {});
      drs.flash(`${r.jobs.length} migration(s) queued` +
                r.skipped.map((s) => `; skipped ${s.vm}: ${s.reason}`).join(""), "info");
      load();
    } catch (e) { drs.flash(e.message, "error"); }
  }

  window.addEventListener("load", () => {
    document.getElementById("record").addEventListener("click", async () => {
      try { render(await drs.post("/api/v1/plans")); drs.flash("", ""); load(); }
      catch (e) { drs.flash(e.message, "error"); }
    });
    load();
  });
})();
