import { test } from "node:test";
import assert from "node:assert/strict";
import { displayText, formatDuration, formatPercent, formatSignedPercent, formatCount, shortFile } from "../js/model/format.js";

test("displayText neutralises bidi overrides and control characters", () => {
  assert.equal(displayText("evil\u202egnp.exe"), "evil[U+202E]gnp.exe");
  assert.equal(displayText("a\u2066b\u2069c\u200fd"), "a[U+2066]b[U+2069]c[U+200F]d");
  assert.equal(displayText("line\nbreak\u0000"), "line[U+000A]break[U+0000]");
  assert.equal(displayText("tab\tkept"), "tab\tkept");
});

test("displayText keeps markup literally (it is text, never HTML)", () => {
  const payload = "\"><img src=x onerror=alert(1)><script>x</script>";
  assert.equal(displayText(payload), payload);
});

test("displayText truncates long strings with an ellipsis", () => {
  const long = "A".repeat(10240);
  const shown = displayText(long, 100);
  assert.equal(shown.length, 100);
  assert.ok(shown.endsWith("\u2026"));
  assert.equal(displayText(null), "");
  assert.equal(displayText(42), "42");
});

test("durations pick a readable unit", () => {
  assert.equal(formatDuration(0), "0 ns");
  assert.equal(formatDuration(999), "999 ns");
  assert.equal(formatDuration(1500), "1.5 \u00b5s");
  assert.equal(formatDuration(12_300_000), "12.3 ms");
  assert.equal(formatDuration(250_000_000), "250 ms");
  assert.equal(formatDuration(1_234_000_000), "1.23 s");
  assert.equal(formatDuration(90e9), "1.50 min");
  assert.equal(formatDuration(NaN), "\u2013");
});

test("percentages, counts and file names", () => {
  assert.equal(formatPercent(0.123), "12.3%");
  assert.equal(formatPercent(0.0012), "0.12%");
  assert.equal(formatPercent(0), "0.0%");
  assert.equal(formatSignedPercent(0.05), "+5.0%");
  assert.equal(formatSignedPercent(-0.05), "\u22125.0%");
  assert.equal(formatCount(1234567), "1,234,567");
  assert.equal(shortFile("/usr/lib/python3.11/json/decoder.py"), "\u2026/json/decoder.py");
  assert.equal(shortFile("app.py"), "app.py");
});
