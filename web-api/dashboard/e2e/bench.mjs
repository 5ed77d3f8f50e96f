// The dashboard's benchmark, in Debian's chromium through playwright-core. Run by
// scripts/bench.d/dashboard (never by hand: it needs a running node). Two modes, each
// printing one JSON object on its last line of stdout:
//
//   node bench.mjs market   LOGIN=<sign-in link> LOADS=<n>
//     the first load's bytes (as sent: the node does not compress, and gzipped as a
//     compressing proxy would send them), and the time from navigation to the
//     marketplace rendered (every provider's card and tool row in the DOM), beside the
//     time of the API call the page makes, fetched from the same page.
//
//   node bench.mjs log      LOGIN=<sign-in link> API=<url> TOKEN=<api token>
//                           SESSION=<open session id> TOOL=<tool> ARGS=<json> RUNS=<n>
//     time from starting a call to its first log line: in the page (the console's Run
//     button to the line in the DOM) beside the API itself (POST, then the SSE stream
//     to its first output event), alternating, medians.
import { chromium } from 'playwright-core';
import { gzipSync } from 'node:zlib';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

async function withBrowser(work) {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox'],
    headless: true,
  });
  try {
    return await work(browser);
  } finally {
    await browser.close();
  }
}

async function signedIn(browser) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  await page.goto(env('LOGIN'));
  await page.waitForURL((url) => !url.pathname.startsWith('/login'), { timeout: 30_000 });
  return { context, page };
}

async function market() {
  const loads = Number(process.env.LOADS || 5);
  return withBrowser(async (browser) => {
    const { context, page } = await signedIn(browser);
    const origin = new URL(page.url()).origin;
    const expected = await page.evaluate(async () => {
      const r = await fetch('/v1/providers?limit=100');
      const body = await r.json();
      return { providers: body.providers.length, tools: body.providers.reduce((n, p) => n + p.tools.length, 0) };
    });

    // The first load in a fresh context (empty cache): every response's body, as sent.
    const fresh = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    await fresh.addCookies(await context.cookies());
    const cold = await fresh.newPage();
    const bodies = [];
    cold.on('response', async (response) => {
      if (!response.url().startsWith(origin)) return;
      try {
        bodies.push({ url: response.url(), body: await response.body() });
      } catch {
        /* redirects have no body */
      }
    });
    await cold.goto(`${origin}/#/market`);
    await cold.waitForFunction((n) => document.querySelectorAll('[data-testid=provider-tool]').length >= n,
      expected.tools, { timeout: 60_000 });
    await cold.waitForLoadState('networkidle');
    const raw = bodies.reduce((n, b) => n + b.body.length, 0);
    const gzipped = bodies.reduce((n, b) => n + gzipSync(b.body, { level: 6 }).length, 0);
    await fresh.close();

    // Navigation to the rendered marketplace, warm cache, beside the API call alone.
    const rendered = [];
    const apiAlone = [];
    for (let i = 0; i < loads; i++) {
      await page.goto('about:blank');
      const started = Date.now();
      await page.goto(`${origin}/#/market`);
      await page.waitForFunction((n) => document.querySelectorAll('[data-testid=provider-tool]').length >= n,
        expected.tools, { timeout: 60_000, polling: 'raf' });
      rendered.push(Date.now() - started);
      apiAlone.push(await page.evaluate(async () => {
        const t = performance.now();
        const r = await fetch('/v1/providers?limit=100&sort=uptime');
        await r.json();
        return performance.now() - t;
      }));
    }
    return {
      providers: expected.providers,
      offers: expected.tools,
      first_load_requests: bodies.length,
      first_load_bytes: raw,
      first_load_gzip_bytes: gzipped,
      market_ms: median(rendered),
      market_api_ms: median(apiAlone),
      loads,
    };
  });
}

async function log() {
  const runs = Number(process.env.RUNS || 6);
  const [api, token, session, tool, args] = ['API', 'TOKEN', 'SESSION', 'TOOL', 'ARGS'].map(env);
  const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };

  async function throughApi() {
    const started = performance.now();
    const r = await fetch(`${api}/v1/sessions/${session}/executions`, {
      method: 'POST', headers, body: JSON.stringify({ tool, args: JSON.parse(args) }),
    });
    if (!r.ok) throw new Error(`POST executions: ${r.status} ${await r.text()}`);
    const exec = await r.json();
    const stream = await fetch(`${api}/v1/executions/${exec.id}/logs`, { headers });
    const reader = stream.body.getReader();
    const decoder = new TextDecoder();
    let text = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) throw new Error('the log ended without output');
      text += decoder.decode(value, { stream: true });
      if (/event: (stdout|stderr)\n/.test(text)) {
        const elapsed = performance.now() - started;
        await reader.cancel();
        return elapsed;
      }
    }
  }

  return withBrowser(async (browser) => {
    const { page } = await signedIn(browser);
    const origin = new URL(page.url()).origin;
    await page.goto(`${origin}/#/session/${session}`);
    await page.click(`[data-testid=palette-tool][data-tool="${tool}"]`);
    const form = page.locator(`[data-testid=tool-form][data-tool="${tool}"]`);
    for (const [name, value] of Object.entries(JSON.parse(args))) {
      await form.locator(`[name="${name}"]`).fill(String(value));
    }
    async function throughPage() {
      // The previous call's output goes first; the next call's first output is a span.
      await page.locator('[data-testid=log]').evaluate((el) => el.replaceChildren());
      const started = Date.now();
      await form.locator('[data-testid=run-tool]').click();
      await page.waitForFunction(() => document.querySelector(
        '[data-testid=log] [data-kind=stdout], [data-testid=log] [data-kind=stderr]') !== null,
      null, { timeout: 60_000, polling: 'raf' });
      const elapsed = Date.now() - started;
      await page.waitForFunction(() => ['completed', 'failed'].includes(
        document.querySelector('[data-testid=exec-state]')?.dataset.state), null, { timeout: 60_000 });
      return elapsed;
    }
    const pageMs = [];
    const apiMs = [];
    for (let i = 0; i < runs; i++) {
      apiMs.push(await throughApi());
      pageMs.push(await throughPage());
    }
    return { runs, log_page_ms: median(pageMs), log_api_ms: median(apiMs) };
  });
}

const mode = process.argv[2];
const modes = { market, log };
if (!modes[mode]) {
  console.error('usage: node bench.mjs market|log (see the comment at the top)');
  process.exit(2);
}
try {
  console.log(JSON.stringify(await modes[mode]()));
} catch (error) {
  console.error(`bench ${mode}: ${error.stack || error}`);
  process.exit(1);
}
