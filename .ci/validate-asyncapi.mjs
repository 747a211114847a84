// Validates an AsyncAPI document with the official parser and fails on any
// error or warning. .ci/run copies this file next to a temporary
// node_modules holding @asyncapi/parser, so the repository needs none.
// Usage: node validate-asyncapi.mjs static/asyncapi.json
import { readFile } from "node:fs/promises";
import { Parser } from "@asyncapi/parser";

const path = process.argv[2];
const { document, diagnostics } = await new Parser().parse(await readFile(path, "utf8"));
const levels = ["error", "warning", "info", "hint"];
let failures = 0;
for (const d of diagnostics) {
  console.log(`${levels[d.severity]} ${d.code}: ${d.message} (at ${d.path.join(".") || "the root"})`);
  if (d.severity <= 1) failures++;
}
if (!document || failures > 0) {
  console.log(`${path}: ${failures} errors and warnings`);
  process.exit(1);
}
console.log(`${path}: valid AsyncAPI ${document.version()}, no errors or warnings`);
