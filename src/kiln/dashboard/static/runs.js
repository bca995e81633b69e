// The runs table: filter by name and status, sort by a column or a metric, select to compare.
"use strict";

kiln.runsView = async function (view) {
  const state = { sort: "-started_at", name: "", status: "", selected: new Set() };
  const name = kiln.el("input", { placeholder: "filter by name", id: "filter-name" });
  const status = kiln.el("select", { id: "filter-status" },
    ["", "running", "finished", "failed", "killed"].map((s) => kiln.el("option", { value: s }, s || "any status")));
  const compare = kiln.el("button", { id: "compare", disabled: "" }, "Compare selected");
  const table = kiln.el("table", { id: "runs" });
  view.append(kiln.el("div", { class: "toolbar" }, name, status, compare), table);

  name.oninput = () => { state.name = name.value; refresh(); };
  status.onchange = () => { state.status = status.value; refresh(); };
  compare.onclick = () => { location.hash = "#/compare/" + [...state.selected].join(","); };

  function sortHeader(label, key) {
    const current = state.sort.replace(/^-/, "") === key;
    const th = kiln.el("th", { class: "sortable" + (current ? " sorted" + (state.sort.startsWith("-") ? "" : " asc") : ""),
                               "data-sort": key }, label);
    th.onclick = () => { state.sort = state.sort === "-" + key ? key : "-" + key; refresh(); };
    return th;
  }

  function render(runs) {
    const metrics = [...new Set(runs.flatMap((r) => Object.keys(r.summary)))].sort().slice(0, 8);
    const head = kiln.el("tr", {}, kiln.el("th", {}, ""), sortHeader("id", "id"), sortHeader("name", "name"),
      sortHeader("status", "status"), sortHeader("started", "started_at"),
      metrics.map((m) => sortHeader(m, m)));
    const rows = runs.map((r) => {
      const box = kiln.el("input", { type: "checkbox", "data-run": r.id });
      box.checked = state.selected.has(r.id);
      box.onchange = () => {
        box.checked ? state.selected.add(r.id) : state.selected.delete(r.id);
        compare.toggleAttribute("disabled", state.selected.size < 2);
      };
      return kiln.el("tr", { "data-run": r.id }, kiln.el("td", {}, box), kiln.el("td", {}, r.id),
        kiln.el("td", {}, kiln.el("a", { href: "#/run/" + r.id }, r.name)),
        kiln.el("td", {}, kiln.status(r.status)), kiln.el("td", {}, kiln.time(r.started_at)),
        metrics.map((m) => kiln.el("td", {}, kiln.fmt(r.summary[m]))));
    });
    table.replaceChildren(kiln.el("thead", {}, head), kiln.el("tbody", {}, rows));
    if (!runs.length) table.append(kiln.el("caption", { class: "muted" }, "no runs match"));
  }

  async function refresh() {
    const query = new URLSearchParams({ sort: state.sort, limit: "500" });
    if (state.name) query.set("name", state.name);
    if (state.status) query.set("status", state.status);
    try { render((await kiln.api("/v1/runs?" + query)).runs); kiln.showError(null); }
    catch (error) { kiln.showError(error); }
  }

  await refresh();
  kiln.every(5000, refresh);
};
