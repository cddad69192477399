// The Hosted Sandboxes page: sign-in, state tabs and project dropdown with their counts, the
// first page of sandboxes, kept current with the waiting read (?wait=60 with If-None-Match).
// Every count comes from one facets call with every filter of the view applied, as the API's
// facets describe; nothing is counted here.
"use strict";

(() => {
  const KEY = "facets.apiKey";
  const ORG = "facets.org";
  const WAIT_S = 60; // the longest wait the API takes: fewest requests from an idle tab
  const RETRY_MS = 2000;
  const $ = (id) => document.getElementById(id);
  const view = { state: "", project: "" };
  let etag = null;
  let generation = 0; // bumped by every refilter or sign-out: older loops stop
  let controller = null;

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const org = () => sessionStorage.getItem(ORG);

  function setStatus(text, offline = false) {
    const status = $("status");
    status.textContent = text;
    status.classList.toggle("offline", offline);
  }

  function api(path, options = {}) {
    const headers = { Authorization: `Bearer ${sessionStorage.getItem(KEY)}`, ...options.headers };
    return fetch(path, { ...options, headers, cache: "no-store" });
  }

  function query(extra = {}) {
    const params = new URLSearchParams();
    if (view.state) params.set("state", view.state);
    if (view.project) params.set("project_id", view.project);
    for (const [name, value] of Object.entries(extra)) params.set(name, value);
    const text = params.toString();
    return text ? `?${text}` : "";
  }

  function stop() {
    generation += 1;
    if (controller) controller.abort();
  }

  function signIn(message) {
    stop();
    sessionStorage.removeItem(KEY);
    $("board").hidden = true;
    $("sign-out").hidden = true;
    $("sign-in").hidden = false;
    const error = $("sign-in-error");
    error.textContent = message || "";
    error.hidden = !message;
    $("org-slug").value = org() || "";
    setStatus("");
  }

  async function detail(response) {
    try {
      return (await response.json()).detail || response.statusText;
    } catch {
      return response.statusText;
    }
  }

  function renderFacets(body) {
    const counts = Object.fromEntries(body.states.map((s) => [s.value, s.count]));
    let all = 0;
    for (const badge of document.querySelectorAll("[data-badge]")) {
      const state = badge.dataset.badge;
      if (state) {
        badge.textContent = String(counts[state] || 0);
        all += counts[state] || 0;
      }
    }
    document.querySelector('[data-badge=""]').textContent = String(all);
    for (const tab of document.querySelectorAll(".tab")) {
      tab.setAttribute("aria-selected", String(tab.dataset.state === view.state));
    }
    const select = $("project");
    select.replaceChildren(new Option("All projects", ""));
    for (const p of body.projects) {
      select.add(new Option(`${p.project_name || p.project_key} (${p.count})`, p.project_id));
    }
    if (view.project && !body.projects.some((p) => p.project_id === view.project)) {
      select.add(new Option("(no sandboxes)", view.project));
    }
    select.value = view.project;
    renderFacets.names = Object.fromEntries(
      body.projects.map((p) => [p.project_id, p.project_name || p.project_key]),
    );
  }

  function renderList(sandboxes) {
    const names = renderFacets.names || {};
    const rows = sandboxes.map((s) => {
      const row = document.createElement("tr");
      row.dataset.sandbox = s.id;
      const cells = [
        [s.id.slice(0, 8), "id"],
        [s.state, "state"],
        [s.project_id ? names[s.project_id] || s.project_id.slice(0, 8) : "—", ""],
        [new Date(s.created_at).toLocaleString(), ""],
      ];
      for (const [text, cls] of cells) {
        const cell = row.insertCell();
        cell.textContent = text;
        if (cls) cell.className = cls;
      }
      return row;
    });
    document.querySelector("#sandboxes tbody").replaceChildren(...rows);
    $("empty").hidden = sandboxes.length > 0;
  }

  // One answer of the facets call (and, when it changed, the list): true to go on.
  async function step(mine) {
    const waiting = etag !== null;
    controller = new AbortController();
    const response = await api(
      `/api/v1/org/${encodeURIComponent(org())}/sandboxes/facets${query(waiting ? { wait: WAIT_S } : {})}`,
      { headers: waiting ? { "If-None-Match": etag } : {}, signal: controller.signal },
    );
    if (mine !== generation) return false;
    if (response.status === 401) {
      signIn("The API key was refused: sign in again.");
      return false;
    }
    if (response.status === 403 || response.status === 404) {
      signIn(await detail(response));
      return false;
    }
    if (response.status === 304) return true;
    if (!response.ok) throw new Error(await detail(response));
    const body = await response.json();
    const list = await api(
      `/api/v1/org/${encodeURIComponent(org())}/sandboxes${query({ limit: 20 })}`,
      { signal: controller.signal },
    );
    if (mine !== generation) return false;
    if (list.status === 401) {
      signIn("The API key was refused: sign in again.");
      return false;
    }
    if (!list.ok) throw new Error(await detail(list));
    renderFacets(body);
    renderList((await list.json()).sandboxes);
    etag = response.headers.get("ETag");
    return true;
  }

  async function keepCurrent(mine) {
    while (mine === generation) {
      try {
        if (!(await step(mine))) return;
        setStatus(navigator.onLine ? "Live" : "Offline: retrying", !navigator.onLine);
      } catch (error) {
        if (mine !== generation) return;
        const offline = error instanceof TypeError || !navigator.onLine;
        setStatus(offline ? "Offline: retrying" : `Error: ${error.message}; retrying`, true);
        await sleep(RETRY_MS);
      }
    }
  }

  function refilter() {
    stop();
    etag = null;
    setStatus("Loading");
    keepCurrent(generation);
  }

  function open() {
    $("sign-in").hidden = true;
    $("board").hidden = false;
    $("sign-out").hidden = false;
    refilter();
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("sign-in").addEventListener("submit", (event) => {
      event.preventDefault();
      sessionStorage.setItem(KEY, $("api-key").value.trim());
      sessionStorage.setItem(ORG, $("org-slug").value.trim());
      $("api-key").value = "";
      open();
    });
    $("sign-out").addEventListener("click", () => signIn(""));
    for (const tab of document.querySelectorAll(".tab")) {
      tab.addEventListener("click", () => {
        view.state = tab.dataset.state;
        refilter();
      });
    }
    $("project").addEventListener("change", (event) => {
      view.project = event.target.value;
      refilter();
    });
    window.addEventListener("offline", () => setStatus("Offline: retrying", true));
    if (sessionStorage.getItem(KEY) && org()) open();
    else signIn("");
  });
})();
