// The dashboard end to end, in Debian's chromium driven by playwright-core, against a
// real network (a chain, a provider, a renter) that the caller started:
//
//   node web-api/dashboard/e2e/dashboard.mjs        (from the repository root)
//
// Environment: RENTER_URL, RENTER_LOGIN (one-time sign-in link of the renter's node),
// PROVIDER_URL, PROVIDER_LOGIN, PROVIDER_ID, CHAIN_RPC (anvil), THAW_SECS (the escrow's
// thaw window), SCREENSHOTS_DIR (one PNG per page; none without it), CHROMIUM
// (default /usr/bin/chromium).
//
// The renter signs in, finds the provider, funds its lane and opens a session, uploads a
// file, runs three tools from their generated forms while the log streams and the cost
// rises, downloads the file back, closes, and finds the session in its history; the
// provider settles, sees its earnings and withdraws them; the renter asks to close its
// lane, passes the thaw window (anvil's clock and the browser's, moved together) and
// takes the unspent deposit back. Every page is scanned with axe-core (serious or
// critical violations fail), checked at 375 px for horizontal overflow, and watched for
// Content-Security-Policy violations, uncaught errors and requests to other origins.
// Prints one line per step; exits non-zero with the failing step; always closes the
// browser.

import { chromium } from 'playwright-core';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(import.meta.url);

// ---------------------------------------------------------------- settings

function need(name) {
  const value = process.env[name];
  if (!value) fail(`${name} is not set (see the header of ${path.basename(import.meta.url)})`);
  return value;
}

function fail(message) {
  console.error(`dashboard e2e FAILED: ${message}`);
  process.exit(1);
}

const RENTER_URL = need('RENTER_URL').replace(/\/$/, '');
const RENTER_LOGIN = need('RENTER_LOGIN');
const PROVIDER_URL = need('PROVIDER_URL').replace(/\/$/, '');
const PROVIDER_LOGIN = need('PROVIDER_LOGIN');
const PROVIDER_ID = need('PROVIDER_ID');
const CHAIN_RPC = need('CHAIN_RPC');
const THAW_SECS = Number(need('THAW_SECS'));
const SCREENSHOTS_DIR = process.env.SCREENSHOTS_DIR ?? '';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

// A provider refuses sessions longer than the thaw window less a 10-minute settle margin.
const SETTLE_MARGIN_SECS = 600;
const SESSION_MINUTES = Math.min(10, Math.floor((THAW_SECS - SETTLE_MARGIN_SECS) / 60));
if (!Number.isFinite(THAW_SECS) || SESSION_MINUTES < 1) {
  fail(`THAW_SECS=${process.env.THAW_SECS}: a provider takes escrow sessions only up to the thaw window less its ${SETTLE_MARGIN_SECS} s settle margin, so no session could open. Start the chain with a thaw window of at least ${SETTLE_MARGIN_SECS + 60} s (this test passes it with evm_increaseTime).`);
}

const DESKTOP = { width: 1280, height: 800 };
const NARROW = { width: 375, height: 800 };
const WAIT = { ui: 15_000, chain: 90_000, network: 120_000 };
const DEADLINE_MS = 9 * 60_000;

// ---------------------------------------------------------------- what the pages did

const problems = { csp: [], errors: [], foreign: [] };
const consoleErrors = [];
const streams = new Set();

function watch(page, label, origin) {
  page.on('console', (msg) => {
    const text = msg.text();
    if (text.startsWith('CSP-VIOLATION') || /Content Security Policy/i.test(text)) problems.csp.push(`${label}: ${text}`);
    else if (msg.type() === 'error') consoleErrors.push(`${label}: ${text}`);
  });
  page.on('pageerror', (error) => problems.errors.push(`${label}: ${error.message}`));
  page.on('request', (request) => {
    const url = new URL(request.url());
    if (['data:', 'blob:', 'about:'].includes(url.protocol)) return;
    if (url.origin !== origin) problems.foreign.push(`${label}: ${request.url()}`);
    if (request.resourceType() === 'eventsource') streams.add(url.pathname);
  });
  page.setDefaultTimeout(WAIT.ui);
  page.setDefaultNavigationTimeout(30_000);
}

function checkProblems() {
  if (problems.csp.length) throw new Error(`Content-Security-Policy violations:\n  ${problems.csp.join('\n  ')}`);
  if (problems.errors.length) throw new Error(`uncaught errors in the page:\n  ${problems.errors.join('\n  ')}`);
  if (problems.foreign.length) throw new Error(`requests to other origins:\n  ${problems.foreign.join('\n  ')}`);
}

// Reports every violation of the policy to the console, where `watch` records it.
function reportViolations() {
  document.addEventListener('securitypolicyviolation', (e) => {
    console.error(`CSP-VIOLATION ${e.violatedDirective} blocked ${e.blockedURI || '(inline)'} at ${e.sourceFile}:${e.lineNumber}`);
  });
}

// ---------------------------------------------------------------- steps and checks

const started = Date.now();
let current = 'starting';

async function step(name, work) {
  current = name;
  const t0 = Date.now();
  await work();
  checkProblems();
  console.log(`ok  ${name} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
}

const axeSource = fs.readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

/** axe-core on the page as it is: serious and critical violations fail. */
async function axeScan(page, name) {
  if (!(await page.evaluate(() => typeof window.axe === 'object'))) await page.evaluate(axeSource);
  const result = await page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
  const bad = result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  if (bad.length) {
    const lines = bad.map((v) => `  ${v.impact} ${v.id}: ${v.help}\n${v.nodes.slice(0, 5).map((n) => `      ${n.target.join(' ')}: ${n.failureSummary.replace(/\s+/g, ' ')}`).join('\n')}`);
    throw new Error(`axe-core: ${bad.length} serious or critical violation(s) on ${name}:\n${lines.join('\n')}`);
  }
  const minor = result.violations.map((v) => `${v.impact} ${v.id}`);
  if (minor.length) console.log(`    axe on ${name}: no serious violation (${minor.join(', ')})`);
}

/** At 375 px wide the page must not scroll sideways (tables scroll in their own box). */
async function checkNarrow(page, name) {
  await page.setViewportSize(NARROW);
  try {
    await settle(page);
    const over = await page.evaluate(() => {
      const doc = document.documentElement;
      const width = doc.clientWidth;
      if (doc.scrollWidth <= width) return null;
      const culprits = [...document.body.querySelectorAll('*')]
        .filter((el) => el.getBoundingClientRect().right > width + 1 && !el.closest('.table-wrap, pre, svg'))
        .slice(0, 6)
        .map((el) => `${el.tagName.toLowerCase()}${el.className ? `.${String(el.className).replace(/\s+/g, '.')}` : ''} (right edge ${Math.round(el.getBoundingClientRect().right)})`);
      return `${doc.scrollWidth} px wide in a ${width} px window; widest: ${culprits.join(', ') || 'unknown'}`;
    });
    if (over) throw new Error(`${name} overflows at 375 px: ${over}`);
  } finally {
    await page.setViewportSize(DESKTOP);
    await settle(page);
  }
}

async function settle(page) {
  await page.evaluate(() => new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve))));
}

async function screenshot(page, file) {
  if (!SCREENSHOTS_DIR) return;
  await page.evaluate(() => window.scrollTo(0, 0));
  await settle(page);
  await page.screenshot({ path: path.join(SCREENSHOTS_DIR, file) });
}

/** Scan, narrow check and screenshot of a page view. */
async function inspect(page, name, file) {
  await axeScan(page, name);
  await checkNarrow(page, name);
  if (file) await screenshot(page, file);
}

/** An API document read by the page itself (its cookie signs the call in). */
function apiGet(page, route) {
  return page.evaluate(async (r) => {
    const res = await fetch(r, { headers: { Accept: 'application/json' } });
    if (!res.ok) throw new Error(`GET ${r}: HTTP ${res.status} ${await res.text()}`);
    return res.json();
  }, route);
}

async function rpc(method, params = []) {
  const res = await fetch(CHAIN_RPC, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }),
    signal: AbortSignal.timeout(10_000),
  });
  const body = await res.json();
  if (body.error) throw new Error(`${method}: ${body.error.message}`);
  return body.result;
}

function micros(text) {
  const m = /^(-?)(\d+)(?:\.(\d{0,6}))?$/.exec(String(text).trim());
  if (!m) throw new Error(`not a USDC amount: ${text}`);
  const v = BigInt(m[2]) * 1000000n + BigInt((m[3] ?? '').padEnd(6, '0'));
  return m[1] ? -v : v;
}

async function attrMicros(locator, name = 'data-micros') {
  return BigInt(await locator.getAttribute(name));
}

/** Signs a fresh context in with a one-time link; answers its page on the dashboard. */
async function signIn(browser, link, origin, label, options = {}) {
  const context = await browser.newContext({ viewport: DESKTOP, acceptDownloads: true, ...options });
  await context.addInitScript(reportViolations);
  const page = await context.newPage();
  watch(page, label, origin);
  const response = await page.goto(link);
  if (!response) throw new Error(`${label}: no answer to the sign-in link`);
  await page.locator('#nav').waitFor({ state: 'visible' });
  const url = new URL(page.url());
  if (url.search.includes('code=')) throw new Error(`${label}: the sign-in code stayed in the address bar (${page.url()})`);
  return { context, page };
}

// ---------------------------------------------------------------- the run

async function run(browser) {
  if (SCREENSHOTS_DIR) fs.mkdirSync(SCREENSHOTS_DIR, { recursive: true });
  const input = `hello from the ORIEN dashboard test\nline two\n${randomBytes(6).toString('hex')}\n`;
  const inputSha = createHash('sha256').update(input).digest('hex');
  let renter;
  let provider;
  let sessionId;

  await step('a browser without a session sees the signed-out view, and a used link is refused', async () => {
    const context = await browser.newContext({ viewport: DESKTOP });
    await context.addInitScript(reportViolations);
    const page = await context.newPage();
    watch(page, 'anonymous', RENTER_URL);
    await page.goto(`${RENTER_URL}/#/market`);
    const view = page.locator('[data-testid="signed-out"]');
    await view.waitFor();
    const text = await view.innerText();
    if (!text.includes('orien-node dashboard')) throw new Error(`the signed-out view does not say how to sign in: ${text}`);
    await axeScan(page, 'the signed-out view');
    await context.close();
  });

  await step('renter: signs in with its one-time link', async () => {
    renter = await signIn(browser, RENTER_LOGIN, RENTER_URL, 'renter');
    const again = await browser.newContext();
    const reuse = await (await again.newPage()).goto(RENTER_LOGIN);
    if (reuse.status() !== 401) throw new Error(`the sign-in link worked twice (HTTP ${reuse.status()})`);
    await again.close();
  });
  const rp = renter.page;
  const providerCard = rp.locator(`[data-testid="provider"][data-provider-id="${PROVIDER_ID}"]`);

  await step('marketplace: lists the provider with its tools and prices', async () => {
    await rp.goto(`${RENTER_URL}/#/market`);
    await providerCard.waitFor({ timeout: WAIT.network });
    for (const tool of ['sha256', 'wc', 'base64']) {
      await providerCard.locator(`[data-testid="provider-tool"][data-tool="${tool}"]`).waitFor();
    }
    await inspect(rp, 'the marketplace', 'market.png');
  });

  await step('marketplace: filters by tool and price', async () => {
    await rp.getByLabel('Tool', { exact: true }).fill('wc');
    await rp.getByLabel('Max price, USDC/min').fill('1');
    await rp.getByRole('button', { name: 'Apply' }).click();
    await rp.waitForURL(/#\/market\?.*tool=wc/);
    await providerCard.waitFor();
    await rp.getByLabel('Max price, USDC/min').fill('0.000001');
    await rp.getByRole('button', { name: 'Apply' }).click();
    await rp.locator('[data-testid="providers-empty"]').waitFor();
    await rp.getByLabel('Max price, USDC/min').fill('');
    await rp.getByLabel('Tool', { exact: true }).fill('');
    await rp.getByRole('button', { name: 'Apply' }).click();
    await providerCard.waitFor();
  });

  let walletBefore;
  await step('new session: rent sha256, review, and fund the unfunded lane from the confirmation', async () => {
    await providerCard.locator('[data-testid="provider-tool"][data-tool="sha256"] [data-testid="rent"]').click();
    await rp.waitForURL(/#\/new\?/);
    await rp.getByLabel('Budget, USDC').fill('0.5');
    await rp.getByLabel('Longest duration, minutes').fill(String(SESSION_MINUTES));
    await rp.getByRole('button', { name: 'Review' }).click();
    const fund = rp.locator('[data-testid="fund-lane"]');
    await fund.waitFor();
    const label = await fund.innerText();
    if (!label.includes('0.500000 USDC')) throw new Error(`the fund offer should be 0.500000 USDC: "${label}"`);
    walletBefore = micros((await apiGet(rp, '/v1/wallet')).usdc);
    await fund.click();
    await rp.locator('[data-testid="fund-result"]').waitFor({ timeout: WAIT.chain });
    await rp.locator('[data-testid="lane-covered"]').waitFor();
    const walletAfter = micros((await apiGet(rp, '/v1/wallet')).usdc);
    if (walletBefore - walletAfter !== 500000n) throw new Error(`funding took ${walletBefore - walletAfter} µUSDC from the wallet, not 500000`);
    await inspect(rp, 'the new-session confirmation', 'new-session.png');
  });

  await step('new session: opens, and the console shows the provider’s palette', async () => {
    await rp.locator('[data-testid="open-session"]').click();
    await rp.waitForURL(/#\/session\/[0-9a-f]{32}/, { timeout: WAIT.network });
    sessionId = /#\/session\/([0-9a-f]{32})/.exec(rp.url())[1];
    for (const tool of ['sha256', 'wc', 'base64']) await rp.locator(`[data-testid="palette-tool"][data-tool="${tool}"]`).waitFor();
    await rp.locator('[data-testid="session-state"]').getByText('active').waitFor();
  });

  await step('console: uploads a file into the workspace', async () => {
    await rp.locator('[data-testid="upload-file"]').setInputFiles({ name: 'input.txt', mimeType: 'text/plain', buffer: Buffer.from(input) });
    await rp.locator('[data-testid="upload-path"]').fill('data/input.txt');
    await rp.locator('[data-testid="upload"]').click();
    await rp.locator('[data-testid="upload-result"]').waitFor();
    await rp.locator('[data-testid="file"][data-path="data/input.txt"]').waitFor();
  });

  const costBefore = await attrMicros(rp.locator('[data-testid="cost-amount"]'));

  /** Runs a tool from its form and waits for its clean exit; answers the log's text. */
  async function runTool(tool, fill) {
    await rp.locator(`[data-testid="palette-tool"][data-tool="${tool}"]`).click();
    const form = rp.locator(`[data-testid="tool-form"][data-tool="${tool}"]`);
    await form.waitFor();
    await fill(form);
    const previous = await rp.locator('[data-testid="exec-state"]').getAttribute('data-exec-id');
    await form.locator('[data-testid="run-tool"]').click();
    const state = rp.locator(`[data-testid="exec-state"][data-state]${previous ? `:not([data-exec-id="${previous}"])` : ''}`);
    await state.waitFor({ timeout: 60_000 });
    const [finished, exit] = [await state.getAttribute('data-state'), await state.getAttribute('data-exit-code')];
    const log = await rp.locator('[data-testid="log"]').innerText();
    if (finished !== 'completed' || exit !== '0') throw new Error(`${tool} ended ${finished} with exit ${exit}: ${await state.innerText()}\n${log}`);
    return log;
  }

  await step('console: runs sha256 from its generated form; the log streams its digest', async () => {
    const log = await runTool('sha256', async (form) => {
      const file = form.getByLabel('file');
      if ((await file.getAttribute('aria-describedby')) === null) throw new Error('the file field has no help text tied to it');
      await file.fill('data/input.txt');
    });
    if (!log.includes(inputSha)) throw new Error(`the log lacks the digest ${inputSha}:\n${log}`);
    if (![...streams].some((p) => /^\/v1\/executions\/[0-9a-f]+\/logs$/.test(p))) throw new Error('the log did not come over server-sent events');
  });

  await step('console: runs wc with an enum argument (lines only)', async () => {
    const log = await runTool('wc', async (form) => {
      await form.getByLabel('file').fill('data/input.txt');
      await form.getByLabel('mode').selectOption({ label: '-l' });
    });
    if (!/^\s*3\s+\S*data\/input\.txt/m.test(log)) throw new Error(`wc -l should count 3 lines:\n${log}`);
  });

  await step('console: runs base64; the output decodes to the uploaded bytes', async () => {
    const log = await runTool('base64', (form) => form.getByLabel('file').fill('data/input.txt'));
    const decoded = Buffer.from(log.replace(/\s+/g, ''), 'base64').toString('utf8');
    if (decoded !== input) throw new Error(`base64 output does not decode to the input:\n${log}`);
  });

  await step('console: the cost meter rises with the receipts', async () => {
    await rp.waitForFunction((before) => BigInt(document.querySelector('[data-testid="cost-amount"]').dataset.micros) > BigInt(before),
      String(costBefore), { timeout: 30_000 });
    const live = await rp.locator('[data-testid="cost-live"]').innerText();
    if (!/USDC spent/.test(live)) throw new Error(`the cost meter's live text reads "${live}"`);
    const value = await rp.locator('[data-testid="cost-bar"]').evaluate((el) => el.value);
    if (!(value > 0)) throw new Error('the cost bar is empty');
  });

  await step('console: downloads the workspace file, byte for byte', async () => {
    const [download] = await Promise.all([
      rp.waitForEvent('download'),
      rp.locator('[data-testid="download"][data-path="data/input.txt"]').click(),
    ]);
    const file = await download.path();
    const got = fs.readFileSync(file, 'utf8');
    if (got !== input) throw new Error(`the download differs from the upload (${got.length} vs ${input.length} bytes)`);
    if (download.suggestedFilename() !== 'input.txt') throw new Error(`the download is named ${download.suggestedFilename()}`);
    await inspect(rp, 'the session console', 'console.png');
  });

  await step('console: closes the session', async () => {
    await rp.locator('[data-testid="close-session"]').click();
    await rp.locator('[data-testid="close-result"]').waitFor({ timeout: 60_000 });
    await rp.locator('[data-testid="session-state"]').getByText('completed').waitFor();
  });

  await step('history: shows the session, its calls and its receipts', async () => {
    await rp.getByRole('link', { name: 'History', exact: true }).click();
    const row = rp.locator(`[data-testid="session-row"][data-session-id="${sessionId}"]`);
    await row.waitFor();
    if ((await row.getAttribute('data-state')) !== 'completed') throw new Error(`the session is ${await row.getAttribute('data-state')} in the history`);
    await row.locator('[data-testid="show-receipts"]').click();
    await rp.locator('[data-testid="receipt"]').first().waitFor();
    const calls = await rp.locator('[data-testid="call-row"]').count();
    if (calls < 3) throw new Error(`the history lists ${calls} calls, expected 3`);
    await inspect(rp, 'the history', 'history.png');
  });

  await step('renter: the node page shows its identity', async () => {
    await rp.getByRole('link', { name: 'Node', exact: true }).click();
    const id = (await apiGet(rp, '/v1/node')).id;
    await rp.locator('[data-testid="node-id-full"]').getByText(id).waitFor();
    await inspect(rp, 'the renter’s node page');
  });

  await step('provider: signs in; its node page lists the tools it sells', async () => {
    provider = await signIn(browser, PROVIDER_LOGIN, PROVIDER_URL, 'provider');
    const pp = provider.page;
    await pp.goto(`${PROVIDER_URL}/#/node`);
    for (const tool of ['sha256', 'wc', 'base64']) await pp.locator(`[data-testid="own-tool"][data-tool="${tool}"]`).waitFor();
    // What its sandbox runs: session containers and the warm pool.
    const containers = await pp.locator('[data-testid="containers"]').textContent({ timeout: 10_000 });
    if (!/Running for sessions/.test(containers) || !/Warm, ready/.test(containers)) {
      throw new Error(`the node page shows no containers: ${containers}`);
    }
    await inspect(pp, 'the provider’s node page', 'node.png');
  });

  let withdrawable;
  await step('provider: settles now and sees the settlement confirmed', async () => {
    const pp = provider.page;
    await pp.goto(`${PROVIDER_URL}/#/earnings`);
    await pp.locator('[data-testid="settle-now"]:enabled').waitFor();
    await pp.locator('[data-testid="settle-now"]').click();
    const result = pp.locator('[data-testid="settle-result"]');
    await result.waitFor({ timeout: WAIT.chain });
    if ((await result.getAttribute('data-count')) === '0') throw new Error('nothing was settled');
    await pp.locator('[data-testid="settlement"][data-state="confirmed"]').first().waitFor({ timeout: 45_000 });
    await pp.waitForFunction(() => BigInt(document.querySelector('[data-testid="earn-withdrawable"]')?.dataset.micros ?? '0') > 0n, null, { timeout: 30_000 });
    withdrawable = await attrMicros(pp.locator('[data-testid="earn-withdrawable"]'));
    const settled = await attrMicros(pp.locator('[data-testid="earn-settled"]'));
    const acked = await attrMicros(pp.locator('[data-testid="earn-acked"]'));
    if (settled !== acked) throw new Error(`settled ${settled} µUSDC of ${acked} acknowledged`);
    await pp.locator('[data-testid="earnings-chart"] rect.bar').first().waitFor({ state: 'attached' });
  });

  await step('provider: withdraws its earnings to its wallet', async () => {
    const pp = provider.page;
    const before = micros((await apiGet(pp, '/v1/wallet')).usdc);
    await pp.locator('[data-testid="withdraw"]').click();
    const result = pp.locator('[data-testid="withdraw-result"]');
    await result.waitFor({ timeout: WAIT.chain });
    const amount = micros(await result.getAttribute('data-amount'));
    // The escrow may keep back one micro-USDC per lane (see the contract's withdrawable).
    if (amount <= 0n || amount > withdrawable || amount < withdrawable - 1n) throw new Error(`withdrew ${amount} µUSDC of ${withdrawable} withdrawable`);
    const after = micros((await apiGet(pp, '/v1/wallet')).usdc);
    if (after - before !== amount) throw new Error(`the wallet rose by ${after - before} µUSDC, the withdrawal said ${amount}`);
    await pp.waitForFunction(() => document.querySelector('[data-testid="earn-withdrawable"]')?.dataset.micros !== undefined);
    await inspect(pp, 'the provider’s earnings', 'earnings-provider.png');
  });

  await step('renter: asks to close its lane, passes the thaw window and takes the deposit back', async () => {
    // A context of its own whose clock the test can move with the chain's.
    const context = await browser.newContext({ viewport: DESKTOP, storageState: await renter.context.storageState() });
    await context.addInitScript(reportViolations);
    await context.clock.install();
    const page = await context.newPage();
    watch(page, 'renter (reclaim)', RENTER_URL);
    await page.goto(`${RENTER_URL}/#/earnings`);
    const lane = page.locator(`[data-testid="lane"][data-provider-id="${PROVIDER_ID}"]`);
    await lane.waitFor();
    const refundable = await attrMicros(lane.locator('[data-testid="lane-refundable"]'));
    if (refundable <= 0n) throw new Error('the lane has nothing to refund');
    const wallet = await attrMicros(page.locator('[data-testid="wallet-usdc"]'));
    await lane.locator('[data-testid="request-close"]').click();
    const asked = page.locator('[data-testid="reclaim-requested"]');
    await asked.waitFor({ timeout: WAIT.chain });
    const thawEnds = Number(await asked.getAttribute('data-thaw-ends'));
    const finish = page.locator(`[data-testid="lane"][data-provider-id="${PROVIDER_ID}"] [data-testid="finish-reclaim"]`);
    await finish.waitFor();
    await page.locator('[data-testid="thaw-countdown"]').getByText(/refundable in/).waitFor();
    if (await finish.isEnabled()) throw new Error('the deposit can be taken back before the thaw window is over');
    // Past the thaw window: the chain's clock, then the browser's by as much.
    const block = await rpc('eth_getBlockByNumber', ['latest', false]);
    const chainNow = Number(BigInt(block.timestamp));
    if (thawEnds >= chainNow) {
      await rpc('evm_increaseTime', [thawEnds - chainNow + 2]);
      await rpc('evm_mine');
    }
    const browserNow = await page.evaluate(() => Date.now());
    if ((thawEnds + 2) * 1000 > browserNow) await page.clock.fastForward((thawEnds + 2) * 1000 - browserNow);
    await page.locator('[data-testid="thaw-countdown"]').getByText('refundable now').waitFor();
    await finish.click({ timeout: 10_000 });
    const result = page.locator('[data-testid="reclaim-result"]');
    await result.waitFor({ timeout: WAIT.chain });
    const refund = micros(await result.getAttribute('data-refund'));
    if (refund !== refundable) throw new Error(`refunded ${refund} µUSDC, the lane showed ${refundable} refundable`);
    await page.waitForFunction((expected) => document.querySelector('[data-testid="wallet-usdc"]')?.dataset.micros === expected,
      String(wallet + refund), { timeout: 15_000 });
    await inspect(page, 'the renter’s earnings and lanes', 'earnings.png');
    await context.close();
  });

  await step('renter: signs out; the API then refuses the browser', async () => {
    await rp.goto(`${RENTER_URL}/#/market`);
    await rp.locator('[data-testid="sign-out"]').click();
    await rp.locator('[data-testid="signed-out"]').waitFor();
    const status = await rp.evaluate(async () => (await fetch('/v1/node')).status);
    if (status !== 401) throw new Error(`after signing out the API answered ${status}`);
  });
}

// ---------------------------------------------------------------- main

const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
const deadline = setTimeout(() => {
  console.error(`dashboard e2e FAILED: still at "${current}" after ${DEADLINE_MS / 60000} minutes`);
  browser.close().finally(() => process.exit(1));
}, DEADLINE_MS);
let status = 0;
try {
  await run(browser);
  console.log(`dashboard e2e OK in ${((Date.now() - started) / 1000).toFixed(0)} s${SCREENSHOTS_DIR ? `; screenshots in ${SCREENSHOTS_DIR}` : ''}`);
} catch (error) {
  status = 1;
  console.error(`dashboard e2e FAILED at "${current}": ${error.message}`);
  if (consoleErrors.length) console.error(`console errors seen:\n  ${consoleErrors.slice(-10).join('\n  ')}`);
} finally {
  clearTimeout(deadline);
  await browser.close();
}
process.exit(status);
