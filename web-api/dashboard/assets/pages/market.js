// Marketplace: the providers this node has heard of (their signed profiles), with their
// tools and prices, uptime and counters; filter by tool and price, sort, and rent.

import { get, query, ApiError } from '../lib/api.js';
import { h, replace, table, errorNotice, field, setFieldError, clearFieldErrors, idCode, working } from '../lib/dom.js';
import { usdc, duration, isAmount } from '../lib/format.js';

const SORTS = [
  ['uptime', 'Longest up'],
  ['price', 'Cheapest'],
  ['sessions', 'Most sessions'],
  ['reputation', 'Best reputation'],
  ['name', 'Name'],
];
const PAGE = 100;

export async function render(ctx) {
  const tool = ctx.params.get('tool') ?? '';
  const maxPrice = ctx.params.get('max_price') ?? '';
  const sort = ctx.params.get('sort') ?? 'uptime';

  const toolInput = h('input', { type: 'text', name: 'tool', value: tool, list: 'market-tools', autocomplete: 'off', spellcheck: 'false', 'data-testid': 'filter-tool' });
  const priceInput = h('input', { type: 'text', name: 'max_price', value: maxPrice, inputmode: 'decimal', autocomplete: 'off', 'data-testid': 'filter-max-price' });
  const sortSelect = h('select', { name: 'sort', 'data-testid': 'filter-sort' },
    SORTS.map(([value, label]) => h('option', { value, selected: value === sort }, label)));
  const toolList = h('datalist', { id: 'market-tools' });
  const form = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter providers', novalidate: true },
    field({ id: 'f-tool', label: 'Tool', input: toolInput }),
    field({ id: 'f-price', label: 'Max price, USDC/min', input: priceInput }),
    field({ id: 'f-sort', label: 'Sort by', input: sortSelect }),
    h('div', { class: 'field' }, h('button', { type: 'submit', 'data-testid': 'filter-apply' }, 'Apply')),
    toolList);
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    clearFieldErrors(form);
    const price = priceInput.value.trim();
    if (price && !isAmount(price)) {
      setFieldError(form, 'f-price', 'a USDC amount such as 0.05 (at most six decimals)');
      priceInput.focus();
      return;
    }
    ctx.go(`#/market${query({ tool: toolInput.value.trim(), max_price: price, sort: sortSelect.value })}`);
  });

  const status = h('p', { class: 'muted', role: 'status', 'data-testid': 'market-status' });
  const list = h('div', { class: 'providers', 'data-testid': 'providers' });
  const more = h('div');
  replace(ctx.main,
    h('h1', { tabindex: '-1' }, 'Marketplace'),
    h('p', { class: 'muted' }, 'Providers this node has heard of over the network, from their signed profiles. Prices are USDC per minute: of open session, and of execution.'),
    form, status, list, more);

  const filtered = Boolean(tool || maxPrice);
  const knownTools = new Set();
  let shown = 0;

  async function load(offset) {
    const page = await get(`/v1/providers${query({ tool, max_price: maxPrice, sort, limit: PAGE, offset })}`);
    if (!ctx.alive()) return page;
    if (offset === 0) {
      list.replaceChildren();
      shown = 0;
    }
    const fragment = document.createDocumentFragment();
    for (const provider of page.providers) {
      fragment.append(providerCard(provider, tool));
      for (const t of provider.tools) knownTools.add(t.tool);
    }
    list.append(fragment);
    shown += page.providers.length;
    toolList.replaceChildren(...[...knownTools].sort().map((t) => h('option', { value: t })));
    status.textContent = page.total === 0
      ? ''
      : `${page.total} provider${page.total === 1 ? '' : 's'}${filtered ? ' match' : ''}${shown < page.total ? `, ${shown} shown` : ''}.`;
    if (page.total === 0) {
      list.append(h('p', { class: 'empty', 'data-testid': 'providers-empty' }, filtered
        ? 'No provider matches these filters.'
        : 'No provider has announced itself yet. Profiles arrive over the network a few seconds after a provider starts; this list refreshes by itself.'));
    }
    replace(more, page.next_offset != null
      ? h('button', { type: 'button', class: 'button-quiet', 'data-testid': 'more-providers', on: { click: () => load(page.next_offset).catch(showError) } }, 'More providers')
      : null);
    return page;
  }

  function showError(e) {
    if (!ctx.alive() || (e instanceof ApiError && e.status === 401)) return;
    const fieldErrors = e.errors ?? [];
    for (const fe of fieldErrors) {
      if (fe.field === 'tool') setFieldError(form, 'f-tool', fe.message);
      if (fe.field === 'max_price') setFieldError(form, 'f-price', fe.message);
    }
    replace(list, errorNotice(e, 'The providers could not be listed'));
  }

  list.append(working('Listing providers…'));
  try {
    const first = await load(0);
    // Until the first profile arrives, look again every few seconds.
    if (first.total === 0 && !filtered) {
      const stop = ctx.every(3000, async () => {
        const page = await load(0);
        if (page.total > 0) stop();
      });
    }
  } catch (e) {
    showError(e);
  }
}

function providerCard(p, filterTool) {
  const rep = p.reputation;
  const upMs = Math.max(0, Date.now() - Number(p.online_since));
  const meta = [
    h('span', {}, 'Up ', h('strong', {}, duration(upMs))),
    h('span', { title: 'What the provider says of itself; check it against your own receipts' }, 'Sessions completed ', h('strong', {}, String(p.sessions_completed))),
    rep
      ? h('span', { title: 'This node’s own evidence and weighted attestations of other renters' }, 'Reputation ', h('strong', {}, rep.score.toFixed(2)))
      : h('span', {}, 'Never rented from'),
    rep ? h('span', {}, 'Calls ', h('strong', {}, `${rep.calls_completed} done / ${rep.calls_failed} failed`)) : null,
    rep && rep.uptime != null ? h('span', {}, 'Pings answered ', h('strong', {}, `${(rep.uptime * 100).toFixed(1)} %`)) : null,
    rep && rep.start_p50_ms != null ? h('span', {}, 'Call start p50 ', h('strong', {}, duration(rep.start_p50_ms))) : null,
  ];
  const rows = p.tools.map((t) => ({
    props: { 'data-testid': 'provider-tool', 'data-tool': t.tool, class: filterTool && t.tool === filterTool ? 'match' : null },
    cells: [
      h('code', {}, t.tool),
      usdc(t.pricing.session_per_minute),
      usdc(t.pricing.exec_per_minute),
      h('a', {
        class: 'button small-button', href: `#/new${query({ provider: p.id, tool: t.tool })}`, 'data-testid': 'rent',
      }, 'Rent', h('span', { class: 'visually-hidden' }, ` ${t.tool} from ${p.display_name}`)),
    ],
  }));
  return h('article', { class: 'provider', 'data-testid': 'provider', 'data-provider-id': p.id, 'aria-label': p.display_name },
    h('h2', {}, p.display_name),
    h('p', { class: 'muted small' }, idCode(p.id), ` · ${p.software}`),
    p.description ? h('p', { class: 'desc' }, p.description) : null,
    h('div', { class: 'meta' }, meta),
    table({
      label: `Tools of ${p.display_name}`,
      columns: [{ label: 'Tool' }, { label: 'Session, USDC/min', num: true }, { label: 'Execution, USDC/min', num: true }, { label: 'Rent' }],
      rows,
      focusable: false,
      empty: 'Sells no tools now.',
    }));
}
