// The coordinators' dashboard. Every number comes from the hub's /v1/flows endpoints, already
// protected there (small counts hidden, the rest adjusted); this script only draws what it is given.
// A hidden value arrives as null and is shown as "hidden": never drawn as a bar, a flow or a zero.
// The token lives in this tab's sessionStorage and goes only into the Authorization header.
"use strict";

(() => {
  const TOKEN_KEY = "hub.dashboard.token";
  const LANG_KEY = "hub.dashboard.lang";
  const STEPS = ["0", "1", "2", "3", "none"];

  const TEXT = {
    sv: {
      title: "Flöden för samordnare", language: "Språk", logout: "Logga ut", loginTitle: "Logga in",
      tokenLabel: "Token (roll coordinator)", login: "Logga in",
      tokenHint: "Token stannar i den här fliken (sessionStorage) och skickas bara till hubben.",
      from: "Från", to: "Till", municipality: "Kommun", senderType: "Avsändartyp",
      recipientType: "Mottagartyp", kind: "Ärendetyp", step: "Trappansteg", dimension: "Välbefinnande",
      milestone: "Ledtid till", received: "mottagen", accepted: "accepterad", completed: "avslutad",
      days: "Stillastående, dagar", apply: "Visa", asTable: "Som tabell", notesTitle: "Så skyddas små tal",
      matrixTitle: "Flöden mellan verksamhetstyper", funnelTitle: "Ärenden per Trappansteg 0–3",
      leadTitle: "Ledtider per kommun (dagar)", stallsTitle: "Stillastående ärenden i steg {step}",
      hidden: "dold", all: "Alla", any: "alla", county: "Länsövergripande", noStep: "Utan steg",
      stepN: "Steg {n}", hiddenFlows: "Dolda flöden (visas inte i diagrammet): {list}",
      nothingShown: "Inget att rita: allt är dolt eller noll", median: "median", p90: "90:e percentilen",
      sender: "Avsändare", recipient: "Mottagare", referrals: "Ärenden", stalled: "Stillastående",
      waiting: "Median dagar väntat", where: "Var", scope: "Veckor {from} – {to} (måndagar) · k = {k}",
      missingToken: "Klistra in en token först.", failed: "Hubben svarade inte: {detail}",
      severalHint: "Ctrl- eller ⌘-klicka för flera; ingen vald: alla",
      teamsTitle: "Teamet kring barnet, nu", namedPerson: "Med namngiven person",
      leadProfessional: "Med ansvarig samordnare", offersUnanswered: "Obesvarade överlämningar",
      pastTransition: "Passerat skede utan ny namngiven person",
    },
    en: {
      title: "Flows for coordinators", language: "Language", logout: "Log out", loginTitle: "Log in",
      tokenLabel: "Token (role coordinator)", login: "Log in",
      tokenHint: "The token stays in this tab (sessionStorage) and is sent only to the hub.",
      from: "From", to: "To", municipality: "Municipality", senderType: "Sender type",
      recipientType: "Recipient type", kind: "Referral kind", step: "Trappan step", dimension: "Wellbeing",
      milestone: "Lead time to", received: "received", accepted: "accepted", completed: "completed",
      days: "Stalled, days", apply: "Show", asTable: "As a table", notesTitle: "How small numbers are protected",
      matrixTitle: "Flows between organisation types", funnelTitle: "Referrals per Trappan step 0–3",
      leadTitle: "Lead times per municipality (days)", stallsTitle: "Referrals stalled at step {step}",
      hidden: "hidden", all: "All", any: "any", county: "County-wide", noStep: "No step",
      stepN: "Step {n}", hiddenFlows: "Hidden flows (not drawn): {list}",
      nothingShown: "Nothing to draw: every value is zero or hidden", median: "median", p90: "90th percentile",
      sender: "Sender", recipient: "Recipient", referrals: "Referrals", stalled: "Stalled",
      waiting: "Median days waiting", where: "Where", scope: "Weeks {from} – {to} (Mondays) · k = {k}",
      missingToken: "Paste a token first.", failed: "The hub did not answer: {detail}",
      severalHint: "Ctrl- or ⌘-click for several; none chosen: all",
      teamsTitle: "The team around the child, now", namedPerson: "With a named person",
      leadProfessional: "With a lead professional", offersUnanswered: "Handovers unanswered",
      pastTransition: "Past a stage without a new named person",
    },
  };

  const $ = (id) => document.getElementById(id);
  const form = () => $("filters");
  let lang = localStorage.getItem(LANG_KEY) || (navigator.language.startsWith("sv") ? "sv" : "en");
  let labels = {};  // vocabulary name → code → label, in the current language
  let places = {};  // SCB municipality code → name (municipalities.json)
  let region = null;  // the coordinator's region (SCB county code), from /v1/me once per login
  const charts = {};
  let generation = 0;  // filters change quickly: only the latest load may draw

  const t = (key, values = {}) =>
    (TEXT[lang][key] ?? key).replace(/\{(\w+)\}/g, (_, name) => String(values[name] ?? ""));

  class Problem extends Error {
    constructor(status, detail) {
      super(detail);
      this.status = status;
    }
  }

  async function getJSON(path, params, { auth = false } = {}) {
    const headers = { Accept: "application/json", "Accept-Language": lang };
    if (auth) headers.Authorization = `Bearer ${sessionStorage.getItem(TOKEN_KEY) || ""}`;
    const query = params ? `?${params}` : "";
    const response = await fetch(path + query, { headers, cache: "no-store", credentials: "omit" });
    if (!response.ok) {
      let detail = response.statusText;
      try {
        detail = (await response.json()).detail || detail;  // problem+json
      } catch {
        // not JSON: keep the status text
      }
      throw new Problem(response.status, detail);
    }
    return response.json();
  }

  // --- labels ------------------------------------------------------------------------------------------

  async function loadLabels() {
    const [types, kinds, wheel, levels, names] = await Promise.all([
      ...["organisation-types", "referral-kinds", "wellbeing-wheel", "intervention-levels"].map((name) =>
        getJSON(`/v1/vocabulary/${name}`)),
      getJSON("/dashboard/static/municipalities.json"),
    ]);
    places = names;
    const byCode = (items) => Object.fromEntries(items.map((c) => [c.code, c.label]));
    labels = {
      "organisation-types": byCode(types.concept),
      "referral-kinds": byCode(kinds.concept),
      "wellbeing-wheel": byCode(wheel.indicators),
      steps: Object.fromEntries(levels.steps.map((s) => [String(s.number), s.label])),
    };
    labels.steps.none = t("noStep");
    for (const select of document.querySelectorAll("select[data-vocab]")) {
      const chosen = select.value;
      select.replaceChildren(new Option(`(${t("any")})`, ""));
      const codes = select.dataset.vocab === "steps" ? STEPS : Object.keys(labels[select.dataset.vocab]);
      for (const code of codes) select.append(new Option(labels[select.dataset.vocab][code] ?? code, code));
      select.value = chosen;
    }
    fillMunicipalities();
  }

  // The region's municipalities by name, SCB codes underneath, and the county-wide units: the hub
  // filters by code, so a coordinator never types one.
  function fillMunicipalities() {
    const select = form().elements.municipality;
    const chosen = new Set([...select.selectedOptions].map((o) => o.value));
    const codes = Object.keys(places).filter((code) => region && code.startsWith(region));
    codes.sort((a, b) => places[a].localeCompare(places[b], "sv"));
    select.replaceChildren(...[...codes, "county"].map((code) =>
      new Option(label("municipality", code), code, false, chosen.has(code))));
  }

  async function loadRegion() {
    const me = await getJSON("/v1/me", null, { auth: true });
    region = me.organisation?.region_code || "";
    fillMunicipalities();
  }

  function label(grouping, code) {
    if (code === "*") return t("all");
    if (code === "county") return t("county");
    if (grouping.includes("municipality")) return places[code] || code;
    if (grouping === "step") return code === "none" ? t("noStep") : t("stepN", { n: code });
    const vocab = grouping.endsWith("_type") ? "organisation-types" : grouping === "kind" ? "referral-kinds" : null;
    return (vocab && labels[vocab]?.[code]) || code;
  }

  function applyText() {
    document.documentElement.lang = lang;
    document.title = `hub · ${t("title")}`;
    for (const el of document.querySelectorAll("[data-t]")) el.textContent = t(el.dataset.t);
    for (const el of document.querySelectorAll("[data-t-title]")) el.title = t(el.dataset.tTitle);
    $("lang").value = lang;
  }

  // --- the questions -----------------------------------------------------------------------------------

  function filterParams() {
    const data = new FormData(form());
    const params = new URLSearchParams();
    for (const name of ["from", "to", "sender_type", "recipient_type", "kind", "step", "dimension"]) {
      const value = String(data.get(name) || "").trim();
      if (value) params.append(name, value);
    }
    for (const code of data.getAll("municipality")) params.append("municipality", String(code));
    return params;
  }

  function ask(endpoint, extra) {
    const params = filterParams();
    for (const [name, value] of Object.entries(extra)) {
      for (const v of [].concat(value)) params.append(name, v);
    }
    return getJSON(`/v1/flows/${endpoint}`, params, { auth: true });
  }

  // Team counts are about now, by municipality: of the filters only the municipalities apply.
  function askTeams(endpoint) {
    const params = new URLSearchParams({ by: "municipality" });
    for (const code of new FormData(form()).getAll("municipality")) params.append("municipality", String(code));
    return getJSON(`/v1/flows/${endpoint}`, params, { auth: true });
  }

  async function load() {
    const board = $("board");
    const mine = ++generation;
    board.dataset.state = "loading";
    showError("");
    const data = new FormData(form());
    const milestone = String(data.get("milestone") || "accepted");
    const days = String(data.get("days") || "").trim();
    try {
      if (region === null) await loadRegion();
      const [matrix, funnel, lead, stalls, teams, handovers] = await Promise.all([
        ask("matrix", { level: "type" }),
        // The stairs are steps 0–3: referrals without a step stay out of this table (unless asked for).
        ask("counts", data.get("step") ? { by: "step" } : { by: "step", step: STEPS.slice(0, 4) }),
        ask("lead-times", { by: "municipality" }),
        ask("stalls", days ? { by: "recipient_type", days } : { by: "recipient_type" }),
        askTeams("teams"),
        askTeams("handovers"),
      ]);
      if (mine !== generation) return;
      drawMatrix(matrix);
      drawFunnel(funnel);
      drawLead(lead, milestone);
      drawStalls(stalls, String(data.get("step") || "") || "2");
      drawTeams(teams, handovers);
      showScope(matrix, [matrix, funnel, lead, stalls, teams, handovers]);
      board.dataset.state = "ready";
    } catch (error) {
      if (mine !== generation) return;
      board.dataset.state = "error";
      if (error instanceof Problem && (error.status === 401 || error.status === 403)) {
        logout(error.message);  // a wrong, expired or non-coordinator token: ask for another
      } else {
        showError(error instanceof Problem ? error.message : t("failed", { detail: error.message }));
      }
    }
  }

  // --- drawing -----------------------------------------------------------------------------------------

  const HIDDEN_STYLE = { color: "#5b6673", fontStyle: "italic" };

  function chart(name) {
    if (!charts[name]) charts[name] = echarts.init($(`chart-${name}`), null, { renderer: "canvas" });
    return charts[name];
  }

  const cells = (answer) => answer.rows.filter((row) => !row.total);
  const value = (row, column) => (column in row.values ? row.values[column] : 0);  // absent: 0
  const shown = (v) => (v === null ? t("hidden") : String(v));

  // Said over a chart with nothing on it, so an empty chart is never read as "no referrals".
  function empty(drawn) {
    return drawn ? undefined : { text: t("nothingShown"), left: "center", top: "middle", textStyle: { ...HIDDEN_STYLE, fontSize: 13 } };
  }

  function drawMatrix(answer) {
    const nodes = new Map();
    const links = [];
    const hidden = [];
    const flows = cells(answer).map((row) => {
      const from = row.key.sender_type;
      const to = row.key.recipient_type;
      return { from, to, sent: value(row, "sent") };
    });
    for (const flow of flows) {
      const title = `${label("sender_type", flow.from)} → ${label("recipient_type", flow.to)}`;
      if (flow.sent === null) {
        hidden.push(title);
      } else if (flow.sent > 0) {
        // A type can both send and receive: distinct node ids keep the diagram acyclic.
        nodes.set(`s:${flow.from}`, label("sender_type", flow.from));
        nodes.set(`r:${flow.to}`, label("recipient_type", flow.to));
        links.push({ source: `s:${flow.from}`, target: `r:${flow.to}`, value: flow.sent });
      }
    }
    chart("matrix").setOption(
      {
        animation: false,
        title: empty(links.length),
        tooltip: {
          trigger: "item",
          formatter: (p) => (p.dataType === "edge"
            ? `${nodes.get(p.data.source)} → ${nodes.get(p.data.target)}: ${p.data.value}`
            : nodes.get(p.name)),
        },
        series: [{
          type: "sankey",
          left: 4, right: 4, top: 8, bottom: 8,
          nodeGap: 10,
          emphasis: { focus: "adjacency" },
          lineStyle: { color: "gradient", opacity: 0.4 },
          label: { formatter: (p) => nodes.get(p.name), width: 180, overflow: "truncate" },
          // Senders' names right of their node, recipients' left of theirs: both stay inside the card.
          levels: [{ depth: 0, label: { position: "right" } }, { depth: 1, label: { position: "left" } }],
          data: [...nodes.keys()].map((name) => ({ name })),
          links,
        }],
      },
      true,
    );
    $("hidden-matrix").textContent = hidden.length ? t("hiddenFlows", { list: hidden.join(", ") }) : "";
    table("table-matrix", [t("sender"), t("recipient"), t("referrals")],
      flows.map((f) => [label("sender_type", f.from), label("recipient_type", f.to), f.sent]));
  }

  function bars(name, categories, series, { horizontal = false } = {}) {
    // Hidden values are null in the series (no bar) and named under their category, in grey.
    const hiddenUnder = categories.map((_, i) =>
      series.filter((s) => s.data[i] === null).map((s) => (series.length > 1 ? `${s.short} ` : "") + t("hidden")));
    const categoryAxis = {
      type: "category",
      data: categories,
      inverse: horizontal,
      axisLabel: {
        interval: 0,
        width: horizontal ? 170 : 110,
        overflow: "truncate",
        lineHeight: 14,
        formatter: (text, i) => (hiddenUnder[i].length ? `${text}\n{h|${hiddenUnder[i].join(", ")}}` : text),
        rich: { h: { ...HIDDEN_STYLE, lineHeight: 14 } },
      },
    };
    const valueAxis = { type: "value", minInterval: 1 };
    chart(name).setOption(
      {
        animation: false,
        title: empty(series.some((s) => s.data.some((v) => v !== null))),  // a true zero is drawn as 0
        legend: series.length > 1 ? { top: 0 } : undefined,
        grid: { left: horizontal ? 185 : 40, right: 20, top: series.length > 1 ? 30 : 10, bottom: 40 },
        tooltip: { trigger: "axis", valueFormatter: shown },
        xAxis: horizontal ? valueAxis : categoryAxis,
        yAxis: horizontal ? categoryAxis : valueAxis,
        series: series.map((s) => ({
          type: "bar", name: s.name, data: s.data, label: { show: true, position: horizontal ? "right" : "top" },
        })),
      },
      true,
    );
  }

  function drawFunnel(answer) {
    const byStep = Object.fromEntries(cells(answer).map((row) => [row.key.step, value(row, "sent")]));
    const steps = STEPS.filter((s) => s !== "none" || s in byStep);
    const data = steps.map((s) => (s in byStep ? byStep[s] : 0));
    bars("funnel", steps.map((s) => label("step", s)), [{ name: t("referrals"), data }], { horizontal: true });
    table("table-funnel", [t("step"), t("referrals")], steps.map((s, i) => [label("step", s), data[i]]));
  }

  function drawLead(answer, milestone) {
    const rows = [...answer.rows].sort((a, b) => Number(a.total) - Number(b.total));  // the county's total last
    const median = rows.map((row) => value(row, `${milestone}_median_days`));
    const p90 = rows.map((row) => value(row, `${milestone}_p90_days`));
    const names = rows.map((row) => label("municipality", row.key.municipality));
    bars("lead", names, [
      { name: t("median"), short: t("median"), data: median },
      { name: t("p90"), short: "p90", data: p90 },
    ]);
    table("table-lead", [t("municipality"), t("referrals"), t("median"), t("p90")],
      rows.map((row, i) => [names[i], value(row, "sent"), median[i], p90[i]]));
  }

  function drawStalls(answer, step) {
    const rows = [...answer.rows].sort((a, b) => Number(a.total) - Number(b.total));
    const names = rows.map((row) => label("recipient_type", row.key.recipient_type));
    const stalled = rows.map((row) => value(row, "stalled"));
    $("stalls-title").textContent = t("stallsTitle", { step: step === "none" ? t("noStep") : step });
    bars("stalls", names, [{ name: t("stalled"), data: stalled }], { horizontal: true });
    table("table-stalls", [t("where"), t("stalled"), t("waiting")],
      rows.map((row, i) => [names[i], stalled[i], value(row, "median_days_waiting")]));
  }

  // Children with a named person and a lead professional, and the handover gaps, per municipality (the
  // county last): two answers on the same keys, a key one of them lacks being a true zero there.
  function drawTeams(teams, handovers) {
    const byKey = new Map();
    for (const row of [...teams.rows, ...handovers.rows]) {
      const entry = byKey.get(row.key.municipality) || { total: row.total, values: {} };
      Object.assign(entry.values, row.values);
      byKey.set(row.key.municipality, entry);
    }
    const keys = [...byKey.keys()].sort((a, b) => Number(byKey.get(a).total) - Number(byKey.get(b).total));
    const names = keys.map((key) => label("municipality", key));
    const columns = [
      ["named_person", "namedPerson"], ["lead_professional", "leadProfessional"],
      ["offers_unanswered", "offersUnanswered"], ["past_transition", "pastTransition"],
    ];
    const series = columns.map(([column, text]) => ({
      name: t(text), short: t(text), data: keys.map((key) => value(byKey.get(key), column)),
    }));
    bars("teams", names, series, { horizontal: true });
    table("table-teams", [t("municipality"), ...columns.map(([, text]) => t(text))],
      keys.map((key, i) => [names[i], ...series.map((s) => s.data[i])]));
  }

  function table(id, headers, rows) {
    const head = document.createElement("tr");
    for (const text of headers) head.append(Object.assign(document.createElement("th"), { textContent: text }));
    const lines = rows.map((row) => {
      const tr = document.createElement("tr");
      for (const cell of row) {
        const td = document.createElement("td");
        td.textContent = shown(cell);
        if (cell === null) td.className = "hidden-value";
        else if (typeof cell === "number") td.className = "num";
        tr.append(td);
      }
      return tr;
    });
    $(id).replaceChildren(head, ...lines);
  }

  function showScope(answer, answers) {
    $("scope").textContent = t("scope", { from: answer.week_from, to: answer.week_to, k: answer.k });
    const notes = new Map();
    for (const a of answers) for (const note of a.notes) notes.set(note.code, note[lang] || note.en);
    $("notes").replaceChildren(...[...notes.values()].map((text) => Object.assign(document.createElement("li"), { textContent: text })));
  }

  // --- login and the page ------------------------------------------------------------------------------

  function showError(message) {
    $("error").textContent = message;
    $("error").hidden = !message;
  }

  function showBoard(on) {
    $("login").hidden = on;
    $("board").hidden = !on;
    $("logout").hidden = !on;
    if (on) for (const c of Object.values(charts)) c.resize();
  }

  function logout(message = "") {
    sessionStorage.removeItem(TOKEN_KEY);
    region = null;
    showBoard(false);
    showError(message);
  }

  async function start() {
    applyText();
    $("login-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const token = $("token").value.trim().replace(/^Bearer\s+/i, "");
      $("token").value = "";
      if (!token) return showError(t("missingToken"));
      sessionStorage.setItem(TOKEN_KEY, token);
      showBoard(true);
      load();
    });
    $("logout").addEventListener("click", () => logout());
    form().addEventListener("submit", (event) => {
      event.preventDefault();
      load();
    });
    form().addEventListener("change", () => load());
    $("lang").addEventListener("change", async () => {
      lang = $("lang").value;
      localStorage.setItem(LANG_KEY, lang);
      applyText();
      await loadLabels();
      if (sessionStorage.getItem(TOKEN_KEY)) load();
    });
    window.addEventListener("resize", () => Object.values(charts).forEach((c) => c.resize()));
    try {
      await loadLabels();
    } catch (error) {
      showError(t("failed", { detail: error.message }));
    }
    if (sessionStorage.getItem(TOKEN_KEY)) {
      showBoard(true);
      load();
    }
    document.body.dataset.started = "true";
  }

  document.addEventListener("DOMContentLoaded", start);
})();
