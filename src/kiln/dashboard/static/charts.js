// Line charts on uPlot: one chart per metric; several series (runs) overlay on a shared step axis.
"use strict";

const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2"];

// series: [{label, step: [...], value: [...]}] -> uPlot's aligned data [xs, ys1, ys2, ...]
kiln.align = function (series) {
  if (series.length === 1) return [series[0].step, series[0].value];
  return uPlot.join(series.map((s) => [s.step, s.value]));
};

kiln.chart = function (container, title, series) {
  const box = kiln.el("div", { class: "chart", "data-key": title });
  box.append(kiln.el("h3", {}, title));
  container.append(box);
  const opts = {
    width: 460, height: 240,
    scales: { x: { time: false } },
    axes: [{ label: "step" }, {}],
    series: [{ label: "step" }].concat(series.map((s, i) => ({
      label: s.label, stroke: COLORS[i % COLORS.length], width: 1.5, spanGaps: true,
    }))),
  };
  const plot = new uPlot(opts, kiln.align(series), box);
  const chart = {
    box, plot,
    update(next) {
      plot.setData(kiln.align(next));
      box.dataset.points = String(next.reduce((n, s) => n + s.step.length, 0));
      box.dataset.lastStep = String(Math.max(...next.map((s) => s.step.at(-1) ?? 0)));
    },
  };
  chart.update(series);
  return chart;
};
