// One run: live curves (polled while the run is running), config, system info, artifacts.
"use strict";

kiln.POINTS = 2000; // per metric: the server keeps each bucket's min and max

kiln.metricsOf = async function (id) {
  return (await kiln.api(`/v1/runs/${id}/metrics?downsample=${kiln.POINTS}`)).metrics;
};

kiln.runView = async function (view, id) {
  const started = performance.now();
  const [run, metrics] = await Promise.all([kiln.api("/v1/runs/" + id), kiln.metricsOf(id)]);
  const title = kiln.el("h2", {}, run.name + " ", kiln.status(run.status));
  const charts = kiln.el("div", { class: "charts", id: "charts" });
  const chartsByKey = {};
  const draw = (all) => {
    for (const [key, s] of Object.entries(all)) {
      const series = [{ label: run.name, step: s.step, value: s.value }];
      if (chartsByKey[key]) chartsByKey[key].update(series);
      else chartsByKey[key] = kiln.chart(charts, key, series);
    }
  };
  const info = kiln.el("div", { class: "grid" },
    kiln.el("section", {}, kiln.el("h3", {}, "Config"), kiln.kvTable(run.config)),
    kiln.el("section", {}, kiln.el("h3", {}, "System"), kiln.kvTable(run.system)),
    kiln.el("section", { class: "artifacts" }, kiln.el("h3", {}, "Artifacts"), kiln.artifactList(run)));
  const times = kiln.el("p", { class: "muted" }, `started ${kiln.time(run.started_at)}`,
    run.ended_at ? `, ended ${kiln.time(run.ended_at)}` : "", run.error ? " — " + run.error.trim().split("\n").at(-1) : "");
  view.append(title, times, charts, info);
  draw(metrics);
  window.kilnRenderDone = performance.now();
  window.kilnRenderMs = window.kilnRenderDone - started; // measured by the browser test
  charts.dataset.renderMs = String(Math.round(window.kilnRenderMs));

  let status = run.status;
  kiln.every(1000, async () => {
    if (status !== "running") return;
    try {
      const [now, next] = await Promise.all([kiln.api("/v1/runs/" + id), kiln.metricsOf(id)]);
      status = now.status;
      title.replaceChildren(now.name + " ", kiln.status(now.status));
      draw(next);
    } catch (error) { kiln.showError(error); }
  });
};

kiln.kvTable = function (object) {
  const rows = Object.entries(object || {}).map(([k, v]) =>
    kiln.el("tr", {}, kiln.el("td", {}, k), kiln.el("td", {}, kiln.fmt(v))));
  return rows.length ? kiln.el("table", { class: "kv" }, rows) : kiln.el("p", { class: "muted" }, "none");
};

kiln.artifactList = function (run) {
  if (!run.artifacts.length) return kiln.el("p", { class: "muted" }, "none");
  return kiln.el("ul", {}, run.artifacts.map((a) => {
    const url = `/v1/runs/${run.id}/artifacts/${a.name.split("/").map(encodeURIComponent).join("/")}`;
    const link = kiln.el("a", { href: "#" }, `${a.name} (${a.size} bytes)`);
    link.onclick = async (event) => { event.preventDefault(); window.open(await kiln.blobUrl(url)); };
    const item = kiln.el("li", {}, link);
    if (a.media_type.startsWith("image/")) {
      const img = kiln.el("img", { alt: a.name });
      kiln.blobUrl(url).then((src) => { img.src = src; });
      item.append(img);
    }
    return item;
  }));
};

// Fetched with the token header, so previews work on servers that require one.
kiln.blobUrl = async function (url) {
  return URL.createObjectURL(await (await kiln.fetch(url)).blob());
};
