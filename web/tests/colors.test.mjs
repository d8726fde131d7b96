import { test } from "node:test";
import assert from "node:assert/strict";
import { packageOf, nodeColor, diffColor, stateColor, hotColor, laneColor, COLOR_MODES } from "../js/model/colors.js";

const rgbOf = (css) => css.match(/\d+/g).map(Number);

test("packages from file paths", () => {
  assert.equal(packageOf("/v/lib/python3.11/site-packages/requests/sessions.py"), "requests");
  assert.equal(packageOf("/usr/lib/python3/dist-packages/yaml/__init__.py"), "yaml");
  assert.equal(packageOf("/usr/lib/python3.11/json/decoder.py"), "stdlib");
  assert.equal(packageOf("<frozen importlib._bootstrap>"), "stdlib");
  assert.equal(packageOf("<built-in>"), "<native>");
  assert.equal(packageOf("/srv/shop/shop/views.py"), "shop");
});

test("state colours: CPU frames are warm, waiting frames cool", () => {
  const [r1, , b1] = rgbOf(stateColor({ name: "f", total: 10, cpu: 10, wait: 0 }));
  const [r2, , b2] = rgbOf(stateColor({ name: "f", total: 10, cpu: 0, wait: 10 }));
  assert.ok(r1 > b1, "cpu is red-orange");
  assert.ok(b2 > r2, "waiting is blue");
});

test("every mode gives a CSS colour for every node", () => {
  const node = { name: "x", file: "/a/b.py", package: "b", total: 5, self: 2, cpu: 3, wait: 2, runnable: 0, unknown: 0, waits: { lock: 2 } };
  for (const mode of COLOR_MODES) assert.match(nodeColor(node, mode, { maxSelf: 4 }), /^(rgb|hsl)\(/);
  assert.equal(nodeColor(node, "package"), nodeColor({ ...node, name: "y" }, "package"), "same package, same colour");
  assert.notEqual(hotColor({ self: 0 }, 10), hotColor({ self: 10 }, 10));
  assert.match(laneColor("wait", "socket recv"), /^rgb\(/);
});

test("diff colours diverge: red for more, blue for less, neutral for none", () => {
  const [r, g, b] = rgbOf(diffColor(1));
  assert.ok(r > 200 && b < 60);
  const [r2, , b2] = rgbOf(diffColor(-1));
  assert.ok(b2 > r2);
  const [r0, g0, b0] = rgbOf(diffColor(0));
  assert.ok(Math.abs(r0 - b0) < 15 && g0 > 200);
  assert.deepEqual(rgbOf(diffColor(5)), [r, g, b], "saturates at 1");
  assert.deepEqual(rgbOf(diffColor(NaN)), [r0, g0, b0]);
});
