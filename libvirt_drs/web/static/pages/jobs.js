"use strict";
(() => {
  async function load() {
    try {
      const jobs = await drs.get("/api/v1/jobs?limit=100");
      document.querySelector("#job-table tbody").replaceChildren(...jobs.slice().reverse().map(drs.jobRow));
    } catch (e) { drs.flash(e.message, "error"); }
  }
  window.addEventListener("load", () => { load(); setInterval(load, 2000); });
})();
