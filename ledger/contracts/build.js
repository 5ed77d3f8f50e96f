#!/usr/bin/env node
// Compiles ledger/contracts/src with the solc pinned in package-lock.json (solcjs, standard
// JSON, fixed optimizer settings) and writes one artifact per contract to
// ledger/contracts/out/<Name>.json: ABI, creation and runtime bytecode, and solc's metadata
// (which records the keccak256 of every source file that went in).
//
//   node ledger/contracts/build.js           rebuild the committed artifacts
//   node ledger/contracts/build.js --check   exit 1 if the committed artifacts differ
//
// Imports resolve against the repository's node_modules (OpenZeppelin, pinned).
'use strict';

const fs = require('fs');
const path = require('path');

const here = __dirname;
const root = path.resolve(here, '..', '..');
const srcDir = path.join(here, 'src');
const outDir = path.join(here, 'out');
const SOLC_VERSION = '0.8.30';
// Contracts whose artifacts are committed, by source file.
const CONTRACTS = {
  'src/OrienEscrow.sol': 'OrienEscrow',
  'src/MockUSDC.sol': 'MockUSDC',
  'src/ReentrantToken.sol': 'ReentrantToken',
};
// Fixed compiler settings: changing any of them changes every artifact, on purpose.
const SETTINGS = {
  optimizer: { enabled: true, runs: 20000 },
  evmVersion: 'cancun',
  viaIR: false,
  metadata: { bytecodeHash: 'ipfs' },
  outputSelection: {
    '*': { '*': ['abi', 'evm.bytecode.object', 'evm.deployedBytecode.object', 'metadata'] },
  },
};

function fail(message) {
  process.stderr.write(`build.js: ${message}\n`);
  process.exit(1);
}

function loadSolc() {
  let solc;
  try {
    solc = require(path.join(root, 'node_modules', 'solc'));
  } catch (err) {
    fail(`solc is not installed (${err.message}); run scripts/test or 'npm ci' at the repository root`);
  }
  if (!solc.version().startsWith(`${SOLC_VERSION}+`)) {
    fail(`solc ${solc.version()} found, ${SOLC_VERSION} required: run 'npm ci' at the repository root`);
  }
  return solc;
}

function findImport(importPath) {
  // Only package imports are allowed besides our own sources: no file system escapes.
  if (importPath.includes('..')) return { error: `refusing import path ${importPath}` };
  const candidates = [path.join(here, importPath), path.join(root, 'node_modules', importPath)];
  for (const candidate of candidates) {
    if (fs.existsSync(candidate)) return { contents: fs.readFileSync(candidate, 'utf8') };
  }
  return { error: `import not found: ${importPath}` };
}

function compile() {
  const solc = loadSolc();
  const sources = {};
  for (const file of Object.keys(CONTRACTS)) {
    sources[file] = { content: fs.readFileSync(path.join(here, file), 'utf8') };
  }
  for (const file of fs.readdirSync(srcDir)) {
    if (file.endsWith('.sol') && !CONTRACTS[`src/${file}`]) {
      fail(`src/${file} is not listed in CONTRACTS of build.js`);
    }
  }
  const input = { language: 'Solidity', sources, settings: SETTINGS };
  const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImport }));
  const errors = (output.errors || []).filter((e) => e.severity === 'error');
  // Warnings in our own sources fail the build; the pinned OpenZeppelin sources carry one
  // known informational warning (transient storage in its reentrancy guard).
  const ours = (e) => !e.sourceLocation || e.sourceLocation.file.startsWith('src/');
  const warnings = (output.errors || []).filter((e) => e.severity !== 'error' && ours(e));
  errors.push(...warnings);
  if (errors.length) fail(`compilation failed:\n${errors.map((e) => e.formattedMessage).join('\n')}`);

  const artifacts = {};
  for (const [file, name] of Object.entries(CONTRACTS)) {
    const contract = output.contracts[file][name];
    artifacts[name] = {
      contractName: name,
      sourceName: file,
      compiler: `solc ${solc.version()}`,
      abi: contract.abi,
      bytecode: `0x${contract.evm.bytecode.object}`,
      deployedBytecode: `0x${contract.evm.deployedBytecode.object}`,
      metadata: contract.metadata,
    };
  }
  return artifacts;
}

function render(artifact) {
  return `${JSON.stringify(artifact, null, 2)}\n`;
}

function main() {
  const check = process.argv.includes('--check');
  const artifacts = compile();
  let stale = [];
  for (const [name, artifact] of Object.entries(artifacts)) {
    const file = path.join(outDir, `${name}.json`);
    const fresh = render(artifact);
    if (check) {
      const committed = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
      if (committed !== fresh) stale.push(path.relative(root, file));
    } else {
      fs.mkdirSync(outDir, { recursive: true });
      fs.writeFileSync(file, fresh);
      process.stdout.write(`wrote ${path.relative(root, file)}\n`);
    }
  }
  if (stale.length) {
    fail(`stale artifacts (sources changed since the last build): ${stale.join(', ')}\n` +
      "run 'node ledger/contracts/build.js' and commit ledger/contracts/out");
  }
  if (check) process.stdout.write('contract artifacts match their sources\n');
}

main();
