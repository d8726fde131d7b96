/** The profile list page ("/"): every stored profile, newest first. */
import { getJSON, apiUrl } from "../api.js";
import { parseProfileList } from "../model/api.js";
import { formatCount, formatDateTime, formatDuration, displayText } from "../model/format.js";
import { h, clear } from "../ui/dom.js";
import { renderTable, splitBar } from "../ui/table.js";
import { setCrumbs, setStatus } from "../ui/chrome.js";
import { mark } from "../ui/debug.js";

function target(p) {
  const cmd = displayText(p.cmdline, 90);
  if (cmd && p.pid) return `${cmd} (pid ${p.pid})`;
  if (cmd) return cmd;
  return p.pid ? `pid ${p.pid}` : "\u2013";
}

export const profileListPage = {
  name: "list",
  match: (pathname) => (pathname === "/" || pathname === "/profiles" || pathname === "/profiles/" ? {} : null),
  mount(root) {
    setCrumbs([{ label: "Profiles" }]);
    document.title = "profviz: profiles";
    const section = h("section", { class: "list-page" }, h("h1", {}, "Profiles"));
    const body = h("div", { class: "table-wrap", id: "profile-list" }, h("p", { class: "hint" }, "Loading profiles\u2026"));
    section.appendChild(body);
    root.appendChild(section);
    let sort = "start";
    let ascending = false;
    let profiles = [];
    const columns = [
      { key: "id", label: "#", numeric: true, value: (p) => p.id, cell: (p) => h("a", { href: `/profiles/${p.id}` }, `#${p.id}`) },
      { key: "start", label: "Started", value: (p) => p.startMs, text: (p) => formatDateTime(p.startMs / 1000) },
      { key: "kind", label: "Kind", value: (p) => p.kind, text: (p) => displayText(p.kind, 24), defaultAscending: true },
      { key: "target", label: "Target", value: (p) => p.cmdline, cell: (p) => h("a", { href: `/profiles/${p.id}`, class: "target" }, target(p)), defaultAscending: true },
      { key: "duration", label: "Duration", numeric: true, value: (p) => p.durationNs, text: (p) => formatDuration(p.durationNs) },
      { key: "samples", label: "Samples", numeric: true, value: (p) => p.sampleCount, text: (p) => formatCount(p.sampleCount) },
      { key: "threads", label: "Threads", numeric: true, value: (p) => p.threads, text: (p) => String(p.threads) },
      {
        key: "split", label: "CPU / waiting", value: (p) => p.cpuNs / Math.max(1, p.cpuNs + p.waitNs + p.runnableNs + p.gilNs),
        title: "Share of sampled wall time on CPU (orange), waiting (blue), runnable (violet), waiting for the GIL (gold)",
        cell: (p) => splitBar({ cpu: p.cpuNs, wait: p.waitNs, runnable: p.runnableNs, gil: p.gilNs }),
      },
    ];
    const draw = () => {
      if (!profiles.length) {
        clear(body).appendChild(h("div", { class: "empty" },
          h("p", {}, "No profiles stored yet."),
          h("p", { class: "hint" }, "Record one with ", h("code", {}, "profviz attach PID"), " or the WSGI middleware, then reload.")));
        return;
      }
      renderTable(body, {
        columns, rows: profiles, sort, ascending,
        onSort: (key, asc) => { sort = key; ascending = asc; draw(); },
      });
      body.dataset.count = String(profiles.length);
    };
    setStatus("");
    getJSON(apiUrl("/profiles"))
      .then((json) => {
        profiles = parseProfileList(json);
        draw();
        mark("list-painted", { count: profiles.length });
      })
      .catch((err) => {
        clear(body).appendChild(h("p", { class: "error" }, `Could not load the profile list: ${err.message}`));
      });
    return { unmount() {} };
  },
};
