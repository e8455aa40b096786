/* The header's catalogue line and the empty-catalogue notice, from GET /v1/info.
   Kept apart from app.js: it only reads /v1/info and touches its own elements. */
"use strict";

(() => {
  const line = document.getElementById("catalogue-line");
  const emptyNotice = document.getElementById("catalogue-empty");
  if (!line) return;

  const number = new Intl.NumberFormat();
  const when = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
  const relative = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });

  function ago(date) {
    const s = (date.getTime() - Date.now()) / 1000;
    const steps = [["day", 86400], ["hour", 3600], ["minute", 60]];
    for (const [unit, size] of steps) {
      if (Math.abs(s) >= size) return relative.format(Math.round(s / size), unit);
    }
    return relative.format(0, "minute");
  }

  function describeIngest(record) {
    if (!record || !record.finished_at) return "no catalogue ingest yet";
    const date = new Date(record.finished_at);
    if (isNaN(date)) return "last ingest: unknown";
    return `catalogue ingested ${when.format(date)} (${ago(date)})`;
  }

  function render(info) {
    const n = Number(info.products) || 0;
    const model = info.model || {};
    const models = [model.image, model.text].filter(Boolean).join(" + ");
    const parts = [`${number.format(n)} ${n === 1 ? "product" : "products"} searchable`];
    if (models) parts.push(`model ${models}`);
    parts.push(describeIngest(info.last_ingest));
    line.textContent = parts.join(" · ");
    if (model.version) line.title = `model version ${model.version}`;
    line.hidden = false;
    const empty = n === 0;
    document.body.classList.toggle("catalogue-is-empty", empty);
    if (emptyNotice) emptyNotice.hidden = !empty;
  }

  async function refresh() {
    try {
      const resp = await fetch("/v1/info", { headers: { Accept: "application/json" } });
      if (!resp.ok) throw new Error(String(resp.status));
      render(await resp.json());
    } catch (_) {
      line.textContent = "catalogue status unavailable";
      line.hidden = false;
    }
  }

  refresh();
  // A catalogue loaded while the tab sat in the background shows when the shopper comes back.
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") refresh();
  });
})();
