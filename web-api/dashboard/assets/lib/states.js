// How the states of sessions and calls read, the same on every page.

import { badge, h } from './dom.js';
import { usdc, duration, time } from './format.js';

/** A session's state: active (or suspended), completed, expired, failed. */
export function stateBadge(session) {
  const kinds = { active: 'ok', completed: 'info', expired: 'warn', failed: 'bad' };
  if (session.state === 'active' && session.suspend_reason) {
    return badge(`suspended: ${session.suspend_reason.replaceAll('_', ' ')}`, 'warn');
  }
  return badge(session.state, kinds[session.state]);
}

/** A call's state: its exit code once it exited, why it failed, or pending / running. */
export function execBadge(exec) {
  if (exec.state === 'completed') return badge(`exit ${exec.exit_code ?? '?'}`, exec.exit_code === 0 ? 'ok' : 'warn');
  if (exec.state === 'failed') return badge(`failed: ${(exec.failure ?? 'unknown').replaceAll('_', ' ')}`, 'bad');
  return badge(exec.state, 'info');
}

/** The columns every list of calls starts with, and a call's cells under them. */
export const CALL_COLUMNS = [{ label: 'Asked' }, { label: 'Tool' }, { label: 'State' },
  { label: 'Wall time', num: true }, { label: 'Cost, USDC', num: true }];

export function callCells(exec) {
  return [
    time(exec.requested_at ?? exec.started_at),
    h('code', {}, exec.tool),
    execBadge(exec),
    exec.wall_ms != null ? duration(exec.wall_ms) : '—',
    usdc(exec.cost),
  ];
}
