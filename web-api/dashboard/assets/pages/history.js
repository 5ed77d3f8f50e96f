// History: every session in this node's ledger (state, tool, peer, cost, times), the
// receipts of one on demand, and the execution records (newest first, a page at a time).

import { get, query, ApiError } from '../lib/api.js';
import { h, replace, table, errorNotice, working, idCode, tableRow } from '../lib/dom.js';
import { usdc, duration, time } from '../lib/format.js';
import { stateBadge, CALL_COLUMNS, callCells } from '../lib/states.js';

const SESSION_COLUMNS = [
  { label: 'Opened' }, { label: 'Role' }, { label: 'Peer' }, { label: 'Tool' }, { label: 'State' },
  { label: 'Cost, USDC', num: true }, { label: 'Budget, USDC', num: true }, { label: 'Open for', num: true },
  { label: 'Receipts', num: true }, { label: 'Actions' },
];

export async function render(ctx) {
  const sessionsEl = h('div', { 'data-testid': 'history-sessions' }, working('Reading the ledger…'));
  const receiptsEl = h('div', { id: 'receipts-panel', 'data-testid': 'receipts-panel' });
  const callsEl = h('div', { 'data-testid': 'history-calls' });
  const moreCalls = h('div');
  replace(ctx.main,
    h('h1', { tabindex: '-1' }, 'History'),
    h('section', { 'aria-labelledby': 'sessions-h' }, h('h2', { id: 'sessions-h' }, 'Sessions'), sessionsEl, receiptsEl),
    h('section', { 'aria-labelledby': 'calls-h' }, h('h2', { id: 'calls-h' }, 'Calls'),
      h('p', { class: 'muted' }, 'Execution records from this node’s ledger: the calls it rented and the calls it ran as provider.'),
      callsEl, moreCalls));

  const [sessions, calls] = await Promise.allSettled([get('/v1/sessions'), get(`/v1/executions${query({ limit: 50 })}`)]);
  if (!ctx.alive()) return;
  if (sessions.status === 'fulfilled') showSessions(sessions.value);
  else if (!(sessions.reason instanceof ApiError && sessions.reason.status === 401)) replace(sessionsEl, errorNotice(sessions.reason, 'The sessions could not be read'));
  if (calls.status === 'fulfilled') {
    callsEl.replaceChildren();
    showCalls(calls.value, true);
  } else if (!(calls.reason instanceof ApiError && calls.reason.status === 401)) replace(callsEl, errorNotice(calls.reason, 'The calls could not be read'));

  function showSessions(list) {
    replace(sessionsEl, table({
      label: 'Sessions',
      testid: 'session-list',
      columns: SESSION_COLUMNS,
      rows: list.map((s) => ({
        props: { 'data-testid': 'session-row', 'data-session-id': s.id, 'data-state': s.state },
        cells: [
          time(s.opened_at),
          s.role,
          idCode(s.role === 'renter' ? s.provider : s.renter),
          s.tool ? h('code', {}, s.tool) : '—',
          [stateBadge(s), s.close_reason ? h('span', { class: 'muted small', title: s.state_detail ?? '' }, ` ${s.close_reason.replaceAll('_', ' ')}`) : null],
          h('span', { 'data-testid': 'session-cost' }, usdc(s.amount)),
          usdc(s.budget),
          duration(s.usage.session_ms),
          String(s.usage.receipts),
          h('span', { class: 'actions' },
            s.role === 'renter' ? h('a', { href: `#/session/${encodeURIComponent(s.id)}`, 'data-testid': 'open-console' }, 'Console', h('span', { class: 'visually-hidden' }, ` of session ${s.id}`)) : null,
            receiptsButton(s)),
        ],
      })),
      empty: 'No session yet. Rent a tool from the marketplace to open one.',
    }));
  }

  function receiptsButton(s) {
    const button = h('button', {
      type: 'button', class: 'button-quiet small-button', 'aria-expanded': 'false', 'aria-controls': 'receipts-panel', 'data-testid': 'show-receipts',
    }, 'Receipts', h('span', { class: 'visually-hidden' }, ` of session ${s.id}`));
    button.addEventListener('click', async () => {
      const open = button.getAttribute('aria-expanded') === 'true';
      for (const b of sessionsEl.querySelectorAll('[data-testid="show-receipts"]')) b.setAttribute('aria-expanded', 'false');
      if (open) {
        replace(receiptsEl);
        return;
      }
      button.setAttribute('aria-expanded', 'true');
      const heading = h('h3', { tabindex: '-1' }, 'Receipts of session ', idCode(s.id));
      replace(receiptsEl, heading, working('Reading the receipts…'));
      try {
        const receipts = await get(`/v1/receipts${query({ session: s.id })}`);
        if (!ctx.alive() || button.getAttribute('aria-expanded') !== 'true') return;
        replace(receiptsEl, heading,
          h('p', { class: 'muted' }, 'Each receipt carries the cumulative usage and amount, signed by the provider and acknowledged by the renter.'),
          table({
            label: `Receipts of session ${s.id}`,
            testid: 'receipts',
            columns: [{ label: '#', num: true }, { label: 'Issued' }, { label: 'Session time', num: true }, { label: 'Execution time', num: true },
              { label: 'CPU', num: true }, { label: 'Execution, USDC', num: true }, { label: 'Artefacts, USDC', num: true },
              { label: 'Amount, USDC', num: true }, { label: 'Hash' }],
            rows: receipts.map((r) => ({
              props: { 'data-testid': 'receipt' },
              cells: [String(r.seq), time(r.issued_at), duration(r.session_ms), duration(r.exec_ms), duration(r.cpu_ms),
                usdc(r.exec_amount), usdc(r.artefact_amount), usdc(r.amount), idCode(r.hash)],
            })),
            empty: 'No receipt was acknowledged in this session.',
          }));
        heading.focus();
      } catch (e) {
        if (ctx.alive() && e.status !== 401) replace(receiptsEl, heading, errorNotice(e, 'The receipts could not be read'));
      }
    });
    return button;
  }

  function showCalls(page, first) {
    const columns = [...CALL_COLUMNS, { label: 'Session' }];
    const rows = page.executions.map((x) => ({
      props: { 'data-testid': 'call-row', 'data-exec-id': x.id },
      cells: [
        ...callCells(x),
        h('a', { href: `#/session/${encodeURIComponent(x.session)}` }, idCode(x.session)),
      ],
    }));
    const existing = callsEl.querySelector('tbody');
    if (first || !existing) {
      replace(callsEl, table({ label: 'Calls', testid: 'call-list', columns, rows, empty: 'No call yet.' }));
    } else {
      for (const row of rows) existing.append(tableRow(row, columns));
    }
    replace(moreCalls, page.next
      ? h('button', {
        type: 'button', class: 'button-quiet',
        on: {
          click: async (event) => {
            event.currentTarget.disabled = true;
            try {
              showCalls(await get(`/v1/executions${query({ limit: 50, after: page.next })}`), false);
            } catch (e) {
              if (ctx.alive() && e.status !== 401) replace(moreCalls, errorNotice(e, 'More calls could not be read'));
            }
          },
        },
      }, 'More calls')
      : null);
  }
}
