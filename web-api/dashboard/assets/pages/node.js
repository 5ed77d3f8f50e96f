// Node: identity, listen addresses, peers, health, the tools it sells, its open sessions.

import { get, ApiError } from '../lib/api.js';
import { h, replace, table, errorNotice, idCode, facts, card } from '../lib/dom.js';
import { usdc, duration, time, bytes } from '../lib/format.js';
import { stateBadge } from '../lib/states.js';

export async function render(ctx) {
  const body = h('div', { 'data-testid': 'node-page' });
  replace(ctx.main, h('h1', { tabindex: '-1' }, 'Node'), body);

  let drawn = '';
  async function load() {
    const results = await Promise.allSettled([
      get('/v1/node'), get('/healthz'), get('/readyz').catch((e) => (e instanceof ApiError && e.status === 503 ? 'not ready' : Promise.reject(e))),
      get('/v1/tools'), get('/v1/sessions'),
    ]);
    if (!ctx.alive()) return;
    const failed = results.find((r) => r.status === 'rejected');
    if (failed) {
      if (!(failed.reason instanceof ApiError && failed.reason.status === 401)) replace(body, errorNotice(failed.reason, 'The node could not be read'));
      drawn = '';
      return;
    }
    const [info, health, ready, offers, sessions] = results.map((r) => r.value);
    // A re-announced offer and the one it replaces are both valid for a while: show the newest.
    const newest = new Map();
    for (const o of offers) if (!newest.has(o.tool) || newest.get(o.tool).issued_at < o.issued_at) newest.set(o.tool, o);
    const tools = [...newest.values()].sort((a, b) => a.tool.localeCompare(b.tool));
    const key = JSON.stringify([info, health.active_sessions, ready, tools, sessions]);
    if (key === drawn) {
      const up = body.querySelector('[data-testid="uptime"]');
      if (up) up.textContent = duration(health.uptime_secs * 1000);
      return;
    }
    drawn = key;
    draw(info, health, String(ready).trim(), tools, sessions.filter((s) => s.state === 'active'));
  }

  function draw(info, health, ready, tools, live) {
    const op = info.operator;
    replace(body,
      h('div', { class: 'cards' },
        card('Health', health.status === 'ok' ? 'alive' : health.status, 'health'),
        card('Ready', ready === 'ready' ? 'yes' : ready, 'ready'),
        card('Up for', duration(health.uptime_secs * 1000), 'uptime'),
        card('Peers connected', String(info.peers), 'peers'),
        card('Offers known', String(info.offers_known), 'offers-known'),
        card('Open sessions', String(health.active_sessions), 'active-sessions')),
      h('section', { class: 'panel', 'aria-labelledby': 'identity-h' },
        h('h2', { id: 'identity-h' }, 'Identity'),
        facts([
          ['Node id', h('code', { 'data-testid': 'node-id-full' }, info.id)],
          ['Version', `orien-node ${info.version}`],
          ['Listening on', info.listen.length ? h('ul', { class: 'plain' }, info.listen.map((a) => h('li', {}, h('code', {}, a)))) : 'nothing yet'],
          ['Connected to', info.connected.length
            ? h('ul', { class: 'plain', 'data-testid': 'connected-peers' }, info.connected.map((p) => h('li', {}, h('code', {}, p))))
            : 'no peer yet'],
        ])),
      op ? h('section', { class: 'panel', 'aria-labelledby': 'operator-h' },
        h('h2', { id: 'operator-h' }, 'Peers it deals with'),
        facts([
          ['Renters served', op.allow_renters ? `only ${op.allow_renters.length} listed` : 'anyone not denied'],
          ['Renters denied', String(op.deny_renters.length)],
          ['Providers rented from', op.allow_providers ? `only ${op.allow_providers.length} listed` : 'anyone not denied'],
          ['Providers denied', String(op.deny_providers.length)],
          ['Sessions per renter', String(op.max_sessions_per_peer)],
          ['Opens per minute per renter', op.max_opens_per_minute_per_peer ? String(op.max_opens_per_minute_per_peer) : 'no limit'],
        ])) : null,
      h('section', { 'aria-labelledby': 'tools-h' },
        h('h2', { id: 'tools-h' }, 'Tools it sells'),
        table({
          label: 'Tools it sells',
          testid: 'own-tools',
          columns: [{ label: 'Tool' }, { label: 'Version' }, { label: 'Session, USDC/min', num: true }, { label: 'Execution, USDC/min', num: true },
            { label: 'Time limit', num: true }, { label: 'Memory', num: true }, { label: 'Calls at once', num: true }, { label: 'Image' }, { label: 'Offer expires' }],
          rows: tools.map((t) => ({
            props: { 'data-testid': 'own-tool', 'data-tool': t.tool },
            cells: [h('code', {}, t.tool), t.version, usdc(t.pricing.session_per_minute), usdc(t.pricing.exec_per_minute),
              duration(t.limits.max_exec_ms), bytes(t.limits.memory_bytes), String(t.limits.concurrent_execs), idCode(t.image_digest, 14, 6), time(t.expires_at)],
          })),
          empty: 'This node sells no tools: it only rents. Run it with --provider-config to sell some.',
        })),
      info.sandbox ? h('section', { class: 'panel', 'aria-labelledby': 'containers-h', 'data-testid': 'containers' },
        h('h2', { id: 'containers-h' }, 'Containers'),
        facts([
          ['Running for sessions', info.sandbox.sessions.length
            ? h('ul', { class: 'plain', 'data-testid': 'container-sessions' }, info.sandbox.sessions.map((id) => h('li', {}, idCode(id))))
            : 'none (each session runs in containers of its own)'],
          ['Warm, ready for the next session', info.sandbox.warm.length
            ? info.sandbox.warm.map((w) => `${w.tool} ${w.ready}`).join(', ')
            : 'none'],
        ])) : null,
      h('section', { 'aria-labelledby': 'live-h' },
        h('h2', { id: 'live-h' }, 'Open sessions'),
        table({
          label: 'Open sessions',
          testid: 'live-sessions',
          columns: [{ label: 'Opened' }, { label: 'Role' }, { label: 'Peer' }, { label: 'Tool' }, { label: 'State' }, { label: 'Cost, USDC', num: true }, { label: 'Budget, USDC', num: true }, { label: 'Console' }],
          rows: live.map((s) => ({
            props: { 'data-testid': 'live-session', 'data-session-id': s.id },
            cells: [time(s.opened_at), s.role, idCode(s.role === 'renter' ? s.provider : s.renter), s.tool ? h('code', {}, s.tool) : '—',
              stateBadge(s), usdc(s.amount), usdc(s.budget),
              h('a', { href: `#/session/${encodeURIComponent(s.id)}` }, 'Open', h('span', { class: 'visually-hidden' }, ` session ${s.id}`))],
          })),
          empty: 'No session is open.',
        })));
  }

  await load();
  ctx.every(5000, load);
}

