import { test } from "node:test";
import assert from "node:assert/strict";
import { parseLocation, buildLocation, DEFAULTS } from "../js/model/urlstate.js";

test("the list page and defaults", () => {
  const s = parseLocation("/", "");
  assert.equal(s.page, "list");
  assert.deepEqual(s.problems, []);
  assert.equal(buildLocation(s), "/");
  assert.equal(parseLocation("/nope", "").page, "notfound");
});

test("a full profile state survives a round trip through the URL", () => {
  const state = {
    ...DEFAULTS,
    page: "profile",
    profile: "12",
    view: "icicle",
    zoom: "345",
    threads: ["0", "3"],
    states: "wait",
    window: [1.25, 3.5],
    search: "socket recv & <b>",
    regex: true,
    color: "package",
    fn: "do_execute",
    file: "/x/sqlalchemy/engine/default.py",
    sort: "self",
    ascending: true,
    other: "13",
    otherWindow: [4, 6.000001],
    otherThreads: ["1"],
  };
  const url = buildLocation(state);
  const [path, query] = url.split("?");
  assert.equal(path, "/profiles/12");
  const back = parseLocation(path, "?" + query);
  assert.deepEqual(back.problems, []);
  for (const key of Object.keys(DEFAULTS)) assert.deepEqual(back[key], state[key], key);
});

test("defaults are left out of the URL", () => {
  assert.equal(buildLocation({ page: "profile", profile: "5" }), "/profiles/5");
  assert.equal(buildLocation({ page: "profile", profile: "5", view: "chart", search: "" }), "/profiles/5?view=chart");
});

test("malformed values fall back to defaults and are reported", () => {
  const s = parseLocation("/profiles/7/", "?view=evil&zoom=abc&t=5-2&color=<x>&states=cpu&sort=bogus&b=x");
  assert.equal(s.page, "profile");
  assert.equal(s.profile, "7");
  assert.equal(s.view, "flame");
  assert.equal(s.zoom, null);
  assert.equal(s.window, null);
  assert.equal(s.color, "state");
  assert.equal(s.states, "cpu");
  assert.equal(s.sort, "self", "Top functions opens on self time");
  assert.equal(s.other, null);
  assert.equal(s.problems.length, 6);
  assert.ok(s.problems.every((p) => p.startsWith("ignored ")));
});
