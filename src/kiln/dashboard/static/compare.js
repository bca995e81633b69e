// Several runs: one chart per metric, each run's curve overlaid.
"use strict";

kiln.compareView = async function (view, ids) {
  const runs = await Promise.all(ids.map((id) => kiln.api("/v1/runs/" + id)));
  const legend = kiln.el("p", { id: "compared" }, runs.map((r) =>
    kiln.el("span", {}, kiln.el("a", { href: "#/run/" + r.id }, `${r.id}: ${r.name}`), " ", kiln.status(r.status), "  ")));
  const charts = kiln.el("div", { class: "charts", id: "charts" });
  view.append(legend, charts);
  const chartsByKey = {};
  const refresh = async () => {
    const all = await Promise.all(ids.map((id) => kiln.metricsOf(id)));
    const keys = [...new Set(all.flatMap((m) => Object.keys(m)))].sort();
    for (const key of keys) {
      const series = runs.map((r, i) => ({ label: `${r.id}: ${r.name}`, step: all[i][key]?.step || [],
                                           value: all[i][key]?.value || [] }));
      if (chartsByKey[key]) chartsByKey[key].update(series);
      else chartsByKey[key] = kiln.chart(charts, key, series);
    }
  };
  await refresh();
  if (runs.some((r) => r.status === "running")) kiln.every(2000, () => refresh().catch(kiln.showError));
};
