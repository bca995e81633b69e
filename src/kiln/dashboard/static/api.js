// The REST API client: JSON GETs, with the bearer token (asked once, kept in localStorage)
// when the server requires one.
"use strict";

const kiln = window.kiln || (window.kiln = {});

kiln.headers = function () {
  const token = localStorage.getItem("kilnToken");
  return token ? { Authorization: "Bearer " + token } : {};
};

kiln.fetch = async function (path, retry = true) {
  const response = await fetch(path, { headers: kiln.headers() });
  if (response.status === 401 && retry) {
    const token = prompt("This kiln server needs an API token (kiln token create):");
    if (token) { localStorage.setItem("kilnToken", token.trim()); return kiln.fetch(path, false); }
  }
  if (!response.ok) {
    let message = response.statusText;
    try { message = (await response.json()).error; } catch (e) { /* not JSON */ }
    throw new Error(`${response.status}: ${message}`);
  }
  return response;
};

kiln.api = async function (path) {
  return (await kiln.fetch(path)).json();
};

kiln.el = function (tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "onclick" || k === "oninput" || k === "onchange") node[k] = v;
    else node.setAttribute(k, v);
  }
  for (const child of children.flat()) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
};

kiln.fmt = function (value) {
  if (value === null || value === undefined) return "";
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : value.toPrecision(4);
  return typeof value === "object" ? JSON.stringify(value) : String(value);
};

kiln.time = (t) => (t ? new Date(t * 1000).toLocaleString() : "");
kiln.status = (s) => kiln.el("span", { class: "status " + s }, s);
