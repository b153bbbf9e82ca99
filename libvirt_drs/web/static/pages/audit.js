"use strict";
(() => {
  async function load() {
    const actor = document.getElementById("audit-actor").value.trim();
    const action = document.getElementById("audit-action").value.trim();
    const q = new URLSearchParams({limit: "200"});
    if (actor) q.set("actor", actor);
    if (action) q.set("action", action);
    try {
      const rows = await drs.get(`/api/v1/audit?${q}`);
      document.querySelector("#audit-table tbody").replaceChildren(...rows.slice().reverse().map((r) =>
        drs.el("tr", {}, drs.el("td", {}, r.at.slice(0, 19).replace("T", " ")), drs.el("td", {}, r.actor),
               drs.el("td", {}, r.action), drs.el("td", {}, r.subject), drs.el("td", {}, r.detail))));
    } catch (e) { drs.flash(e.message, "error"); }
  }
  window.addEventListener("load", () => {
    document.getElementById("audit-go").addEventListener("click", load);
    load();
  });
})();
