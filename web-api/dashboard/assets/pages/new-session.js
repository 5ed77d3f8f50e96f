// New session: provider, tool, budget and longest duration; then a confirmation that
// shows what the escrow lane to the provider must hold, offers to fund it from the
// wallet when it is short, and opens the session.

import { get, post, query, seg, ApiError, isNoChain } from '../lib/api.js';
import { h, replace, field, facts, errorNotice, notice, working, busy, idCode, setFieldError, clearFieldErrors } from '../lib/dom.js';
import { usdc, toMicros, fromMicros, duration, isAmount } from '../lib/format.js';

const MAX_MINUTES = 7 * 24 * 60;

export async function render(ctx) {
  const wantProvider = ctx.params.get('provider') ?? '';
  const wantTool = ctx.params.get('tool') ?? '';

  const page = await get(`/v1/providers${query({ limit: 500, sort: 'name' })}`);
  const providers = page.providers;
  if (wantProvider && !providers.some((p) => p.id === wantProvider)) {
    try {
      providers.unshift(await get(`/v1/providers/${seg(wantProvider)}`));
    } catch (e) {
      if (!(e instanceof ApiError) || e.status === 401) throw e;
    }
  }
  if (!ctx.alive()) return;

  if (!providers.length) {
    replace(ctx.main,
      h('h1', { tabindex: '-1' }, 'New session'),
      notice('warn', h('p', {}, 'This node knows no provider yet. Providers appear in the ',
        h('a', { href: '#/market' }, 'marketplace'), ' as their signed profiles arrive over the network.')));
    return;
  }

  const providerSelect = h('select', { name: 'provider', 'data-testid': 'new-provider' },
    providers.map((p) => h('option', { value: p.id, selected: p.id === wantProvider }, `${p.display_name} (${p.id.slice(-8)})`)));
  const toolSelect = h('select', { name: 'tool', 'data-testid': 'new-tool' });
  const budgetInput = h('input', { type: 'text', name: 'budget', value: ctx.params.get('budget') ?? '0.50', inputmode: 'decimal', autocomplete: 'off', 'aria-required': 'true', 'data-testid': 'new-budget' });
  const minutesInput = h('input', { type: 'number', name: 'minutes', value: ctx.params.get('minutes') ?? '10', min: '1', max: String(MAX_MINUTES), step: '1', inputmode: 'numeric', 'aria-required': 'true', 'data-testid': 'new-duration' });
  const providerInfo = h('div', { class: 'muted small', 'data-testid': 'new-provider-info' });

  const chosenProvider = () => providers.find((p) => p.id === providerSelect.value);
  function fillTools() {
    const p = chosenProvider();
    const keep = toolSelect.value || wantTool;
    replace(toolSelect, (p?.tools ?? []).map((t) => h('option', { value: t.tool, selected: t.tool === keep },
      `${t.tool} — ${usdc(t.pricing.session_per_minute)} /min open, ${usdc(t.pricing.exec_per_minute)} /min executing`)));
    replace(providerInfo, p ? [idCode(p.id), p.description ? ` · ${p.description}` : ''] : '');
  }
  providerSelect.addEventListener('change', () => { fillTools(); replace(confirm); });
  toolSelect.addEventListener('change', () => replace(confirm));
  fillTools();

  const form = h('form', { novalidate: true, 'data-testid': 'new-form', 'aria-labelledby': 'new-h' },
    field({ id: 'ns-provider', label: 'Provider', input: providerSelect, required: true }),
    providerInfo,
    field({ id: 'ns-tool', label: 'Tool', input: toolSelect, required: true, help: 'The session can run every tool of the provider; this one sets the price of open session time.' }),
    field({ id: 'ns-budget', label: 'Budget, USDC', input: budgetInput, required: true, help: 'The most this session may cost. It ends when the budget is spent.' }),
    field({ id: 'ns-duration', label: 'Longest duration, minutes', input: minutesInput, required: true, help: `The session closes by itself after this (1 to ${MAX_MINUTES}).` }),
    h('button', { type: 'submit', 'data-testid': 'review' }, 'Review'));

  const confirm = h('section', { 'aria-labelledby': 'confirm-h', 'data-testid': 'confirm', tabindex: '-1' });
  replace(ctx.main,
    h('h1', { tabindex: '-1', id: 'new-h' }, 'New session'),
    h('div', { class: 'columns' }, h('div', { class: 'panel' }, form), confirm));

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const choice = readForm();
    if (choice) review(choice).catch((e) => showError(e));
  });

  function readForm() {
    clearFieldErrors(form);
    const provider = chosenProvider();
    const tool = provider?.tools.find((t) => t.tool === toolSelect.value);
    const budget = budgetInput.value.trim();
    const minutes = Number(minutesInput.value);
    let bad = null;
    if (!tool) bad = bad ?? setError('ns-tool', 'this provider sells no tool now', toolSelect);
    if (!isAmount(budget) || toMicros(budget) <= 0n) bad = bad ?? setError('ns-budget', 'a USDC amount above zero, such as 0.50 (at most six decimals)', budgetInput);
    if (!Number.isInteger(minutes) || minutes < 1 || minutes > MAX_MINUTES) bad = bad ?? setError('ns-duration', `whole minutes from 1 to ${MAX_MINUTES}`, minutesInput);
    if (bad) {
      bad.focus();
      return null;
    }
    return { provider, tool, budget: toMicros(budget), minutes };
  }

  function setError(id, message, input) {
    setFieldError(form, id, message);
    return input;
  }

  function showError(e, lead = 'Could not prepare the session') {
    if (!ctx.alive() || (e instanceof ApiError && e.status === 401)) return;
    replace(confirm, errorNotice(e, lead));
  }

  async function review(choice) {
    replace(confirm, working('Checking the lane to this provider and the wallet…'));
    const [wallet, lanes, sessions] = await Promise.allSettled([
      get('/v1/wallet'), get('/v1/lanes'), get('/v1/sessions'),
    ]);
    if (!ctx.alive()) return;
    for (const r of [wallet, lanes, sessions]) {
      if (r.status === 'rejected' && !isNoChain(r.reason)) throw r.reason;
    }
    const chain = wallet.status === 'fulfilled';
    const lane = chain ? lanes.value.find((l) => l.role === 'renter' && l.provider === choice.provider.id) : null;
    // The lane must also hold the budgets of the sessions already open on it.
    const held = sessions.value
      .filter((s) => s.role === 'renter' && s.state === 'active' && s.provider === choice.provider.id)
      .reduce((sum, s) => sum + (toMicros(s.budget) ?? 0n), 0n);
    const state = { choice, chain, wallet: chain ? wallet.value : null, lane, held, funded: null };
    showConfirm(state);
    confirm.focus();
  }

  function showConfirm(state) {
    const { choice, chain, lane, held } = state;
    const p = choice.tool.pricing;
    const sessionPrice = toMicros(p.session_per_minute) ?? 0n;
    const lasts = sessionPrice > 0n ? (choice.budget * 60000n) / sessionPrice : null;
    const summary = facts([
      ['Provider', [choice.provider.display_name, ' ', idCode(choice.provider.id)]],
      ['Tool', h('code', {}, choice.tool.tool)],
      ['Prices', `${usdc(p.session_per_minute)} USDC per minute open, ${usdc(p.exec_per_minute)} per minute of execution`
        + ((toMicros(p.artefact_per_gib) ?? 0n) > 0n ? `, ${usdc(p.artefact_per_gib)} per GiB of output files kept` : '')],
      ['Budget', `${fromMicros(choice.budget)} USDC`, 'confirm-budget'],
      ['Longest duration', duration(choice.minutes * 60000)],
      lasts !== null ? ['Budget lasts', `${duration(Number(lasts))} of open session at most (less while tools run)`] : null,
    ]);

    const payment = h('div', { class: 'stack' });
    let short = 0n;
    let laneKnown = false;
    if (!chain) {
      payment.append(notice('info', h('p', {}, 'This node is not connected to a chain: the session is paid through the two nodes’ ledgers, nothing is deposited.')));
    } else {
      laneKnown = Boolean(lane) || state.funded !== null;
      const deposit = state.funded ?? (lane ? toMicros(lane.deposit) : 0n);
      const acked = lane ? toMicros(lane.acked) : 0n;
      const needed = acked + held + choice.budget;
      short = needed > deposit ? needed - deposit : 0n;
      const walletUsdc = toMicros(state.wallet.usdc) ?? 0n;
      payment.append(facts([
        ['Wallet', `${usdc(state.wallet.usdc)} USDC`, 'confirm-wallet'],
        ['Lane deposit', laneKnown ? `${fromMicros(deposit)} USDC` : 'no lane to this provider in this node’s ledger yet', 'confirm-deposit'],
        lane ? ['Already owed on it', `${usdc(lane.acked)} USDC`] : null,
        held > 0n ? ['Held by open sessions', `${fromMicros(held)} USDC`] : null,
        ['This session needs', `${fromMicros(needed)} USDC on the lane`, 'confirm-needed'],
      ]));
      if (lane && lane.close !== 'open') {
        payment.append(notice('warn', h('p', {}, 'A close of this lane was asked. Funding it again cancels the close; the provider refuses sessions until then.')));
      }
      if (short > 0n) {
        const fundButton = h('button', { type: 'button', 'data-testid': 'fund-lane' }, `Fund the lane with ${fromMicros(short)} USDC`);
        const enough = walletUsdc >= short;
        payment.append(notice('warn',
          h('p', { 'data-testid': 'lane-short' }, laneKnown
            ? `The lane is ${fromMicros(short)} USDC short. Add it from the wallet: the provider settles from the lane, the rest stays yours to take back.`
            : `Deposit ${fromMicros(short)} USDC in an escrow lane to this provider. What the session does not spend stays yours to take back.`),
          enough ? null : h('p', {}, `The wallet holds only ${usdc(state.wallet.usdc)} USDC: send USDC to `, h('code', {}, state.wallet.address), ' first, or lower the budget.'),
          h('p', {}, fundButton)));
        const fundError = h('div', { 'data-testid': 'fund-error' });
        payment.append(fundError);
        fundButton.disabled = !enough;
        fundButton.addEventListener('click', () => fund(state, short, fundButton, fundError));
      } else {
        payment.append(notice('ok', h('p', { 'data-testid': 'lane-covered' }, 'The lane covers this session.')));
      }
      if (state.fundedView) {
        payment.append(notice('ok', h('p', { 'data-testid': 'fund-result' },
          `Funded: the lane holds ${usdc(state.fundedView.deposit)} USDC now (transaction `, idCode(state.fundedView.tx, 10, 8), `, block ${state.fundedView.block}).`)));
      }
    }

    const openButton = h('button', { type: 'button', 'data-testid': 'open-session' }, 'Open session');
    // A lane this node never used may hold a deposit it does not know of: let it try.
    if (chain && laneKnown && short > 0n) {
      openButton.disabled = true;
      openButton.title = 'Fund the lane first';
    }
    const progress = h('div', { 'data-testid': 'open-progress' });
    openButton.addEventListener('click', () => open(state, openButton, progress));
    replace(confirm,
      h('div', { class: 'panel' },
        h('h2', { id: 'confirm-h' }, 'Confirm'),
        summary,
        h('h3', {}, 'Payment'),
        payment,
        h('p', { class: 'row' }, openButton, h('button', { type: 'button', class: 'button-quiet', on: { click: () => { replace(confirm); providerSelect.focus(); } } }, 'Change')),
        progress));
  }

  async function fund(state, amount, button, errorEl) {
    replace(errorEl);
    try {
      const funded = await busy(button, 'Waiting for the chain to confirm the deposit…', () =>
        post('/v1/wallet/fund', { to: state.choice.provider.payout, amount: fromMicros(amount) }, { idempotent: true }));
      if (!ctx.alive()) return;
      state.funded = toMicros(funded.deposit);
      state.fundedView = funded;
      state.wallet = await get('/v1/wallet').catch(() => state.wallet);
      if (!ctx.alive()) return;
      showConfirm(state);
      confirm.querySelector('[data-testid="open-session"]')?.focus();
    } catch (e) {
      if (!ctx.alive() || (e instanceof ApiError && e.status === 401)) return;
      replace(errorEl, errorNotice(e, 'Funding the lane failed'));
    }
  }

  async function open(state, button, progress) {
    const { choice } = state;
    replace(progress, working('Waiting for the provider to accept: it checks the lane on chain and prepares a sandbox…', { 'data-testid': 'opening' }));
    try {
      const session = await busy(button, 'Opening…', () => post('/v1/sessions', {
        tool: choice.tool.tool,
        provider: choice.provider.id,
        budget: fromMicros(choice.budget),
        max_duration_secs: choice.minutes * 60,
      }, { idempotent: true }));
      if (!ctx.alive()) return;
      ctx.go(`#/session/${encodeURIComponent(session.id)}`);
    } catch (e) {
      if (!ctx.alive() || (e instanceof ApiError && e.status === 401)) return;
      const fields = { budget: 'ns-budget', max_duration_secs: 'ns-duration', tool: 'ns-tool', provider: 'ns-provider' };
      for (const fe of e.errors ?? []) if (fields[fe.field]) setFieldError(form, fields[fe.field], fe.message);
      replace(progress, errorNotice(e, 'The session did not open'));
    }
  }
}
