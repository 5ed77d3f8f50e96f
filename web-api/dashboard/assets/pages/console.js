// Session console: the cost meter (polled every second while the session is open), the
// provider's tool palette with a form per tool from its JSON Schema, the live log of a
// call over server-sent events, the workspace (upload, list, download), the session's
// calls, and Close.

import { get, post, call, query, seg, filePath } from '../lib/api.js';
import { h, append, replace, table, errorNotice, notice, working, busy, idCode, field, facts } from '../lib/dom.js';
import { stateBadge, execBadge, CALL_COLUMNS, callCells } from '../lib/states.js';
import { usdc, toMicros, fromMicros, percent, duration, time, bytes, shortId } from '../lib/format.js';
import { schemaFields } from '../lib/schema-form.js';

/** Largest upload the node takes in one PUT. */
/** Characters of output the page keeps in the log view. */
const MAX_LOG_CHARS = 1_000_000;

/** The most one call of an offer can cost: its wall-time limit at its execution price. */
function worstCall(offer) {
  return (BigInt(offer.limits.max_exec_ms) * (toMicros(offer.pricing.exec_per_minute) ?? 0n)) / 60000n;
}

export async function render(ctx) {
  const id = ctx.args[0];
  if (!id) {
    ctx.go('#/history');
    return;
  }
  let session = await get(`/v1/sessions/${seg(id)}`);
  if (!ctx.alive()) return;
  const renter = session.role === 'renter';
  const base = `/v1/sessions/${seg(session.id)}`;

  // ---- header
  const stateEl = h('span', { 'data-testid': 'session-state' });
  const stateDetail = h('p', { class: 'muted', 'data-testid': 'session-state-detail' });
  const providerName = h('span', {}, idCode(session.provider));
  const closeButton = h('button', { type: 'button', class: 'button-danger', 'data-testid': 'close-session' }, 'Close session');
  const closeResult = h('div', { 'aria-live': 'polite' });
  closeButton.addEventListener('click', closeSession);

  // ---- cost meter
  const amountEl = h('span', { class: 'amount', 'data-testid': 'cost-amount' });
  const budgetEl = h('span', { class: 'muted' });
  const bar = h('progress', { class: 'cost', 'aria-labelledby': 'cost-h', 'data-testid': 'cost-bar' });
  const costLive = h('p', { class: 'muted small', 'aria-live': 'polite', 'aria-atomic': 'true', 'data-testid': 'cost-live' });
  const usageEl = h('div', { class: 'small' });

  // ---- tools
  const palette = h('ul', { class: 'palette', 'aria-label': 'Tools of this provider', 'data-testid': 'palette' });
  const toolPanel = h('div', { 'data-testid': 'tool-panel' });

  // ---- log
  const logTitle = h('span', { 'data-testid': 'log-title' }, 'No call yet');
  const logEl = h('pre', { class: 'log', role: 'log', 'aria-live': 'polite', 'aria-labelledby': 'log-h', tabindex: '0', 'data-testid': 'log' });
  const execState = h('p', { 'data-testid': 'exec-state', 'aria-live': 'polite' });

  // ---- files and calls
  const filesEl = h('div', { 'data-testid': 'files' });
  const uploadResult = h('div', { 'aria-live': 'polite' });
  const callsEl = h('div', { 'data-testid': 'calls' });
  const toolsSection = h('section', { class: 'panel', 'aria-labelledby': 'tools-h' },
    h('h2', { id: 'tools-h' }, 'Tools'), palette, toolPanel);
  const upload = renter ? uploadForm() : null;
  const consoleGrid = h('div', { class: 'console' });
  const workspaceSection = renter ? h('section', { class: 'panel', 'aria-labelledby': 'files-h' },
    h('h2', { id: 'files-h' }, 'Workspace'), upload, uploadResult, filesEl) : null;
  const closedNote = h('p', { class: 'muted', hidden: true }, 'The session is closed: its workspace and sandbox are gone. Its calls and their logs stay here.');

  replace(ctx.main,
    h('div', { class: 'row' },
      h('h1', { tabindex: '-1' }, 'Session ', h('code', { title: session.id }, shortId(session.id, 8, 4))),
      stateEl,
      h('span', { class: 'spacer' }),
      renter ? closeButton : null),
    h('p', { class: 'muted' }, renter ? 'Rented from ' : 'Provided to ', renter ? providerName : idCode(session.renter),
      session.tool ? [' · opened on ', h('code', {}, session.tool)] : null, ` · ${time(session.opened_at)}`),
    stateDetail,
    closeResult,
    h('section', { class: 'panel meter', 'aria-labelledby': 'cost-h', 'data-testid': 'cost-meter' },
      h('h2', { id: 'cost-h' }, 'Cost'),
      h('div', { class: 'figures' }, amountEl, budgetEl),
      bar, costLive, usageEl),
    renter ? closedNote : null,
    renter ? append(consoleGrid, [
      toolsSection,
      h('section', { class: 'panel', 'aria-labelledby': 'log-h' },
        h('h2', { id: 'log-h' }, 'Log: ', logTitle),
        h('div', { class: 'legend', 'aria-hidden': 'true' }, h('span', {}, 'standard output'), h('span', { class: 'stderr-key' }, 'standard error')),
        logEl, execState)]) : null,
    workspaceSection,
    h('section', { 'aria-labelledby': 'calls-h' },
      h('h2', { id: 'calls-h' }, 'Calls in this session'), callsEl));

  // ---------------------------------------------------------------- the session
  let lastAmount = null;
  function showSession(s) {
    session = s;
    replace(stateEl, stateBadge(s));
    stateDetail.textContent = s.state_detail ?? '';
    const amount = toMicros(s.amount) ?? 0n;
    const budget = toMicros(s.budget) ?? 0n;
    amountEl.textContent = `${fromMicros(amount)} USDC`;
    amountEl.dataset.micros = String(amount);
    budgetEl.textContent = `of ${fromMicros(budget)} USDC budget`;
    bar.max = Number(budget > 0n ? budget : 1n);
    bar.value = Number(amount);
    const share = percent(amount, budget);
    bar.classList.toggle('high', budget > 0n && amount * 10n >= budget * 9n);
    if (lastAmount !== amount) {
      lastAmount = amount;
      costLive.textContent = `${fromMicros(amount)} of ${fromMicros(budget)} USDC spent${share ? ` (${share} %)` : ''}, ${s.usage.receipts} receipt${s.usage.receipts === 1 ? '' : 's'}.`;
    }
    replace(usageEl,
      facts([
        ['Session time', duration(s.usage.session_ms)],
        ['Execution time', duration(s.usage.exec_ms)],
        ['CPU time', duration(s.usage.cpu_ms)],
        ['Receipts', String(s.usage.receipts)],
      ], { class: 'inline' }),
      facts([
        ['Session price', `${usdc(s.pricing.session_per_minute)} USDC/min (${s.tool ?? 'the opened tool'}); each call at its tool’s execution price`],
        ['Split so far', `provider ${usdc(s.split.provider)}, fee ${usdc(s.split.fee)}, reserve ${usdc(s.split.reserve)}`],
      ], { class: 'inline' }));
    const open = s.state === 'active';
    closeButton.hidden = !open;
    toolsSection.hidden = !open;
    closedNote.hidden = open;
    consoleGrid.classList.toggle('single', !open);
    if (workspaceSection) workspaceSection.hidden = !open;
  }
  showSession(session);

  const stopPolling = ctx.every(1000, async () => {
    const s = await get(`/v1/sessions/${seg(session.id)}`);
    if (!ctx.alive()) return;
    showSession(s);
    if (s.state !== 'active') {
      stopPolling();
      refreshCalls();
    }
  });
  if (session.state !== 'active') stopPolling();

  async function closeSession() {
    replace(closeResult);
    try {
      const s = await busy(closeButton, 'Closing: waiting for the last receipt…', () => post(`${base}/close`, {}));
      if (!ctx.alive()) return;
      showSession(s);
      stopPolling();
      replace(closeResult, notice('ok', h('p', { 'data-testid': 'close-result' },
        `Closed. It cost ${usdc(s.amount)} USDC over ${s.usage.receipts} receipts. `,
        h('a', { href: '#/history' }, 'See it in the history'), '.')));
      refreshCalls();
    } catch (e) {
      if (!ctx.alive() || e.status === 401) return;
      replace(closeResult, errorNotice(e, 'The session did not close'));
    }
  }

  if (renter) {
    providerNameLookup();
    loadTools();
    refreshFiles();
  }
  refreshCalls();

  async function providerNameLookup() {
    try {
      const p = await get(`/v1/providers/${seg(session.provider)}`);
      if (ctx.alive()) replace(providerName, p.display_name, ' ', idCode(p.id));
    } catch { /* the id stays */ }
  }

  // ---------------------------------------------------------------- tools
  let files = [];
  let currentForm = null;

  async function loadTools() {
    replace(toolPanel, working('Reading the provider’s offers…'));
    let byTool;
    try {
      byTool = await offersByTool();
    } catch (e) {
      if (ctx.alive() && e.status !== 401) replace(toolPanel, errorNotice(e, 'The tools could not be listed'));
      return;
    }
    if (!ctx.alive()) return;
    if (!byTool.size) {
      replace(toolPanel, notice('warn', h('p', {}, 'The provider’s offers are not in this node’s offer book now (it may be offline). Its tools show here once its offers arrive again.')));
    } else {
      showPalette(byTool);
      choose(byTool.get(ctx.params.get('tool')) ?? byTool.get(session.tool) ?? byTool.values().next().value);
    }
    // Offers arrive one by one over the network: the palette takes in the ones that
    // come later (the provider's profile says which tools to expect), for a minute.
    let expected = null;
    let checks = 0;
    const stop = ctx.every(2000, async () => {
      checks += 1;
      expected ??= (await get(`/v1/providers/${seg(session.provider)}`)).tools.map((t) => t.tool);
      const now = await offersByTool();
      if (!ctx.alive()) return;
      if (now.size > byTool.size) {
        const first = !byTool.size;
        byTool = now;
        showPalette(byTool);
        if (first) choose(byTool.get(session.tool) ?? byTool.values().next().value);
      }
      if (expected.every((tool) => byTool.has(tool)) || checks >= 30) stop();
    });
  }

  /** The provider's offers in this node's book, one per tool (the newest first listed). */
  async function offersByTool() {
    const offers = await get(`/v1/offers${query({ provider: session.provider })}`);
    const byTool = new Map();
    for (const offer of offers) if (!byTool.has(offer.tool)) byTool.set(offer.tool, offer);
    return new Map([...byTool.entries()].sort(([a], [b]) => a.localeCompare(b)));
  }

  let paletteButtons = [];
  function showPalette(byTool) {
    const pressed = paletteButtons.find((b) => b.getAttribute('aria-pressed') === 'true')?.dataset.tool;
    paletteButtons = [...byTool.values()].map((offer) => h('button', {
      type: 'button', 'aria-pressed': String(offer.tool === pressed), 'data-testid': 'palette-tool', 'data-tool': offer.tool,
      on: { click: () => choose(offer) },
    }, offer.tool));
    replace(palette, paletteButtons.map((b) => h('li', {}, b)));
  }

  function choose(offer) {
    for (const b of paletteButtons) b.setAttribute('aria-pressed', String(b.dataset.tool === offer.tool));
    showToolForm(offer);
  }

  function showToolForm(offer) {
    const prefix = `arg-${offer.tool.replace(/[^a-z0-9_-]/g, '_')}`;
    const generated = schemaFields(offer.args_schema, { idPrefix: prefix, files });
    const runButton = h('button', { type: 'submit', 'data-testid': 'run-tool' }, `Run ${offer.tool}`);
    const result = h('div', { 'aria-live': 'polite' });
    const form = h('form', { novalidate: true, 'data-testid': 'tool-form', 'data-tool': offer.tool, 'aria-labelledby': `${prefix}-h` },
      h('h3', { id: `${prefix}-h` }, offer.tool, ' ', h('span', { class: 'muted small' }, offer.version)),
      offer.description ? h('p', { class: 'muted' }, offer.description) : null,
      h('p', { class: 'small muted' }, `${usdc(offer.pricing.exec_per_minute)} USDC per minute of execution; at most ${duration(offer.limits.max_exec_ms)} a call (so at most ${fromMicros(worstCall(offer))} USDC), ${bytes(offer.limits.output_bytes)} of output. A call whose most does not fit what is left of the budget is refused.`
        + ((toMicros(offer.pricing.artefact_per_gib) ?? 0n) > 0n
          ? ` Output files it keeps cost ${usdc(offer.pricing.artefact_per_gib)} USDC per GiB, kept ${offer.keep_artefacts_ms > 0 ? `${duration(offer.keep_artefacts_ms)} after the session` : 'while the session is open'}.`
          : '')),
      generated.fields,
      runButton,
      result);
    currentForm = { form, generated, tool: offer.tool };
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      replace(result);
      const read = generated.read(form);
      if (read.errors) {
        form.querySelector('[aria-invalid="true"]')?.focus();
        return;
      }
      try {
        const exec = await busy(runButton, 'Starting…', () =>
          post(`${base}/executions`, { tool: offer.tool, args: read.args }, { idempotent: true }));
        if (!ctx.alive()) return;
        follow(exec);
        refreshCalls();
      } catch (e) {
        if (!ctx.alive() || e.status === 401) return;
        const rest = generated.showErrors(form, e.errors ?? []);
        replace(result, errorNotice({ detail: e.detail, errors: rest }, 'The call did not start'));
      }
    });
    replace(toolPanel, form);
  }

  // ---------------------------------------------------------------- the log
  let source = null;
  let logChars = 0;

  function appendChunk(kind, text) {
    if (logChars >= MAX_LOG_CHARS) return;
    let chunk = text;
    if (logChars + chunk.length > MAX_LOG_CHARS) chunk = `${chunk.slice(0, MAX_LOG_CHARS - logChars)}\n[the rest is not shown here]`;
    logChars += chunk.length;
    const atBottom = logEl.scrollTop + logEl.clientHeight >= logEl.scrollHeight - 8;
    const last = logEl.lastElementChild;
    if (last && last.dataset.kind === kind) {
      last.append(chunk);
    } else {
      logEl.append(h('span', { class: kind, 'data-kind': kind },
        kind === 'stderr' ? h('span', { class: 'visually-hidden' }, '[standard error] ') : null, chunk));
    }
    if (atBottom) logEl.scrollTop = logEl.scrollHeight;
  }

  function sysLine(text) {
    logEl.append(h('span', { class: 'sys', 'data-kind': 'sys' }, `${logEl.textContent && !logEl.textContent.endsWith('\n') ? '\n' : ''}${text}\n`));
    logEl.scrollTop = logEl.scrollHeight;
  }

  function showExit(exec) {
    // Arguments the provider refused: its detail names the field as a JSON pointer.
    const refused = exec.failure === 'invalid_arguments' && /^\/([^:/]+): (.*)$/s.exec(exec.detail ?? '');
    if (refused && currentForm?.tool === exec.tool) currentForm.generated.showErrors(currentForm.form, [{ field: refused[1], message: refused[2] }]);
    execState.dataset.state = exec.state;
    if (exec.exit_code !== null && exec.exit_code !== undefined) execState.dataset.exitCode = String(exec.exit_code);
    const parts = [execBadge(exec)];
    if (exec.wall_ms != null) parts.push(` in ${duration(exec.wall_ms)}`);
    if (exec.cost != null) parts.push(`, cost ${usdc(exec.cost)} USDC`);
    if (exec.detail) parts.push(h('br'), exec.detail);
    if (exec.stdout_truncated || exec.stderr_truncated) parts.push(h('br'), 'The output was cut at the offer’s cap.');
    replace(execState, parts);
  }

  /** Follows a call's log (from its start) until its exit. */
  function follow(exec) {
    source?.close();
    logEl.replaceChildren();
    logChars = 0;
    replace(logTitle, h('code', {}, exec.tool), ' ', idCode(exec.id, 6, 4));
    execState.removeAttribute('data-state');
    execState.removeAttribute('data-exit-code');
    execState.dataset.execId = exec.id;
    const ended = exec.state === 'completed' || exec.state === 'failed';
    replace(execState, ended ? '' : working(`${exec.tool} is ${exec.state === 'pending' ? 'starting' : 'running'}…`));
    let received = 0;
    let failures = 0;
    const es = ctx.track(new EventSource(`/v1/executions/${seg(exec.id)}/logs`));
    source = es;
    const chunk = (kind) => (event) => {
      received += 1;
      appendChunk(kind, event.data);
    };
    es.addEventListener('stdout', chunk('stdout'));
    es.addEventListener('stderr', chunk('stderr'));
    es.addEventListener('exit', (event) => {
      es.close();
      let view = null;
      try {
        view = JSON.parse(event.data);
      } catch {
        view = null;
      }
      if (!view) return fallback();
      // The node no longer holds this call's stream (a restart): show what its record keeps.
      if (received === 0) {
        if (view.stdout) appendChunk('stdout', view.stdout);
        if (view.stderr) appendChunk('stderr', view.stderr);
      }
      showExit(view);
      refreshCalls();
      refreshFiles();
    });
    es.addEventListener('error', (event) => {
      if (typeof event.data === 'string') {
        // The node's own `error` event: it stopped following this log.
        es.close();
        sysLine(`The node stopped following this log: ${event.data}`);
        fallback();
        return;
      }
      failures += 1;
      if (es.readyState === EventSource.CLOSED || failures > 5) {
        es.close();
        fallback();
      }
      // Otherwise the browser reconnects and resumes after the last event it got.
    });

    async function fallback() {
      try {
        const view = await get(`/v1/executions/${seg(exec.id)}`);
        if (!ctx.alive() || source !== es) return;
        if (received === 0) {
          if (view.stdout) appendChunk('stdout', view.stdout);
          if (view.stderr) appendChunk('stderr', view.stderr);
        }
        if (view.state === 'completed' || view.state === 'failed') showExit(view);
        else replace(execState, notice('warn', h('p', {}, `The live log was lost while ${view.tool} is ${view.state}. `,
          h('button', { type: 'button', class: 'button-quiet small-button', on: { click: () => follow(view) } }, 'Follow it again'))));
      } catch (e) {
        if (ctx.alive() && e.status !== 401) replace(execState, errorNotice(e, 'The call’s state could not be read'));
      }
    }
  }

  // ---------------------------------------------------------------- workspace
  function uploadForm() {
    const fileInput = h('input', { type: 'file', 'data-testid': 'upload-file', 'aria-required': 'true' });
    const pathInput = h('input', { type: 'text', autocomplete: 'off', spellcheck: 'false', placeholder: 'data/input.txt', 'data-testid': 'upload-path' });
    const button = h('button', { type: 'submit', 'data-testid': 'upload' }, 'Upload');
    fileInput.addEventListener('change', () => {
      const f = fileInput.files?.[0];
      if (f && !pathInput.value) pathInput.value = f.name;
    });
    const form = h('form', { novalidate: true, 'data-testid': 'upload-form', 'aria-label': 'Upload a file' },
      h('div', { class: 'row' },
        field({ id: 'up-file', label: 'File', input: fileInput, required: true, help: 'Streamed to the provider, up to the tool’s upload cap; it keeps the file only whole and matching its SHA-256.' }),
        field({ id: 'up-path', label: 'Save as', input: pathInput, help: 'A path in the workspace; folders are made as needed.' })),
      button);
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      replace(uploadResult);
      const f = fileInput.files?.[0];
      const path = (pathInput.value.trim() || f?.name || '').replace(/^\/+/, '');
      if (!f) return replace(uploadResult, notice('error', h('p', {}, 'Choose a file to upload.')));
      if (!path || path.split('/').some((part) => part === '..' || part === '.')) {
        return replace(uploadResult, notice('error', h('p', {}, 'Give a path inside the workspace, without “..”, such as data/input.txt.')));
      }
      try {
        const view = await busy(button, 'Uploading…', () => call('PUT', `${base}/files/${filePath(path)}`, { body: f }));
        if (!ctx.alive()) return;
        replace(uploadResult, notice('ok', h('p', { 'data-testid': 'upload-result' }, `Uploaded ${view.path} (${bytes(view.size)}), SHA-256 `, h('code', { title: view.sha256 }, shortId(view.sha256 || '', 12, 6)), '.')));
        form.reset();
        refreshFiles();
      } catch (e) {
        if (ctx.alive() && e.status !== 401) replace(uploadResult, errorNotice(e, 'The upload failed'));
      }
    });
    return form;
  }

  async function refreshFiles() {
    if (!renter) return;
    if (session.state !== 'active') {
      replace(filesEl, h('p', { class: 'empty' }, 'The workspace was removed with the session.'));
      return;
    }
    let list;
    try {
      list = await get(`${base}/files`);
    } catch (e) {
      if (ctx.alive() && e.status !== 401) replace(filesEl, errorNotice(e, 'The workspace could not be listed'));
      return;
    }
    if (!ctx.alive()) return;
    files = list.filter((f) => !f.is_dir).map((f) => f.path);
    currentForm?.generated.setFiles(files);
    replace(filesEl,
      table({
        label: 'Workspace files',
        testid: 'file-list',
        columns: [{ label: 'Path' }, { label: 'Size', num: true }, { label: 'Download' }],
        rows: list.map((f) => ({
          props: { 'data-testid': 'file', 'data-path': f.path },
          cells: [
            h('code', {}, f.is_dir ? `${f.path}/` : f.path),
            f.is_dir ? '' : bytes(f.size),
            f.is_dir ? '' : h('a', {
              href: `${base}/files/${filePath(f.path)}`, download: f.path.split('/').pop(), 'data-testid': 'download', 'data-path': f.path,
            }, 'Download', h('span', { class: 'visually-hidden' }, ` ${f.path}`)),
          ],
        })),
        empty: 'The workspace is empty. Upload a file for the tools to read.',
      }),
      h('button', { type: 'button', class: 'button-quiet small-button', 'data-testid': 'refresh-files', on: { click: refreshFiles } }, 'Refresh'));
  }

  // ---------------------------------------------------------------- calls
  async function refreshCalls() {
    let page;
    try {
      page = await get(`/v1/executions${query({ session: session.id, limit: 100 })}`);
    } catch (e) {
      if (ctx.alive() && e.status !== 401) replace(callsEl, errorNotice(e, 'The calls could not be listed'));
      return;
    }
    if (!ctx.alive()) return;
    if (renter && !source && page.executions.length) follow(page.executions[0]);
    replace(callsEl, table({
      label: 'Calls in this session',
      testid: 'call-list',
      columns: [...CALL_COLUMNS, { label: 'Log' }],
      rows: page.executions.map((x) => ({
        props: { 'data-testid': 'call', 'data-exec-id': x.id },
        cells: [
          ...callCells(x),
          renter ? h('button', { type: 'button', class: 'button-quiet small-button', on: { click: () => follow(x) } }, 'Show', h('span', { class: 'visually-hidden' }, ` the log of ${x.tool} ${x.id}`)) : '',
        ],
      })),
      empty: 'No call yet.',
    }));
  }
}
