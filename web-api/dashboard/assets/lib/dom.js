// Building the page with the DOM only: text from the network (names, descriptions,
// tool output) always goes in as text nodes, never as markup.

const PROPERTIES = new Set(['value', 'checked', 'disabled', 'hidden', 'required', 'selected', 'multiple', 'open']);

/** An element: `h('p', {class: 'muted', 'data-testid': 'x'}, 'text', child)`. */
export function h(tag, props, ...children) {
  return fill(document.createElement(tag), props, children);
}

/** An SVG element, alike. */
export function svg(tag, props, ...children) {
  return fill(document.createElementNS('http://www.w3.org/2000/svg', tag), props, children);
}

function fill(el, props, children) {
  for (const [key, value] of Object.entries(props ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'class') el.setAttribute('class', value);
    else if (key === 'text') el.textContent = String(value);
    else if (key === 'on') for (const [event, fn] of Object.entries(value)) el.addEventListener(event, fn);
    else if (PROPERTIES.has(key)) el[key] = value;
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}

/** Appends children: nodes, strings, numbers, arrays of them; null and false are skipped. */
export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Replaces an element's children. */
export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** A long id shortened, the whole of it in a tooltip and for copying. */
export function idCode(id, head = 8, tail = 6) {
  if (id === null || id === undefined || id === '') return h('span', { class: 'muted', text: '—' });
  const text = String(id);
  const short = text.length <= head + tail + 1 ? text : `${text.slice(0, head)}…${text.slice(-tail)}`;
  return h('code', { title: text, 'data-full': text }, short);
}

/** A small state label. `kind`: ok, bad, warn, info or none. */
export function badge(text, kind) {
  return h('span', { class: kind ? `badge ${kind}` : 'badge' }, text);
}

/** A spinner with a text that screen readers announce. */
export function working(text, props = {}) {
  return h('p', { class: 'loading', role: 'status', ...props }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), text);
}

/** A message box; errors are announced at once. */
export function notice(kind, ...content) {
  const role = kind === 'error' ? 'alert' : 'status';
  return h('div', { class: `notice ${kind}`, role }, ...content);
}

/** An error for people: the problem's detail, and each invalid field. */
export function errorNotice(error, lead) {
  const fields = error?.errors ?? [];
  return notice(
    'error',
    h('p', {}, lead ? h('strong', {}, `${lead}: `) : null, error?.detail ?? String(error)),
    fields.length
      ? h('ul', {}, fields.map((f) => h('li', {}, h('code', {}, f.field), ` — ${f.message}`)))
      : null,
  );
}

/**
 * A table inside its own scrolling box. `columns`: [{label, num}]; `rows`: arrays of
 * cells, or {cells, props} to give the row attributes.
 */
export function table({ label, columns, rows, testid, empty, focusable = true }) {
  if (!rows.length && empty) return h('p', { class: 'empty', 'data-testid': testid ? `${testid}-empty` : null }, empty);
  const head = h('tr', {}, columns.map((c) => h('th', { scope: 'col', class: c.num ? 'num' : null }, c.label)));
  const body = h('tbody', {}, rows.map((row) => tableRow(row, columns)));
  return h(
    'div',
    { class: 'table-wrap', role: 'region', 'aria-label': `${label} (table)`, tabindex: focusable ? '0' : null },
    h('table', { 'data-testid': testid }, h('thead', {}, head), body),
  );
}

/** One table row (see `table`). */
export function tableRow(row, columns) {
  const cells = Array.isArray(row) ? row : row.cells;
  const props = Array.isArray(row) ? {} : row.props;
  return h('tr', props, cells.map((cell, i) => {
    const col = columns[i] ?? {};
    const cls = [col.num ? 'num' : null, col.wrap ? 'wrap' : null].filter(Boolean).join(' ') || null;
    return h('td', { class: cls }, cell);
  }));
}

/** A labelled form field with its help and error text tied to the input. */
export function field({ id, label, input, help, required, check }) {
  input.id = id;
  const helpId = help ? `${id}-help` : null;
  const errorId = `${id}-error`;
  const describedBy = [helpId, errorId].filter(Boolean).join(' ');
  input.setAttribute('aria-describedby', describedBy);
  const error = h('span', { class: 'field-error', id: errorId, 'data-testid': `${id}-error` });
  const labelEl = h('label', { for: id, class: check ? 'check' : null }, check ? input : null, label,
    required ? h('span', { class: 'muted' }, ' (required)') : null);
  return h('div', { class: 'field' },
    labelEl,
    check ? null : input,
    help ? h('span', { class: 'help', id: helpId }, help) : null,
    error);
}

/** Shows `message` as the error of the field whose input has this id (empty clears). */
export function setFieldError(form, id, message) {
  const input = form.querySelector(`#${CSS.escape(id)}`);
  const error = form.querySelector(`#${CSS.escape(`${id}-error`)}`);
  if (input) {
    if (message) input.setAttribute('aria-invalid', 'true');
    else input.removeAttribute('aria-invalid');
  }
  if (error) error.textContent = message ?? '';
}

/** Clears every field error of a form. */
export function clearFieldErrors(form) {
  for (const el of form.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
  for (const el of form.querySelectorAll('.field-error')) el.textContent = '';
}

/**
 * Runs `work` with `button` disabled and showing a spinner and `label`; restores it
 * after. Returns what `work` returns (or throws what it throws).
 */
export async function busy(button, label, work) {
  const saved = [...button.childNodes];
  button.disabled = true;
  button.setAttribute('aria-busy', 'true');
  replace(button, h('span', { class: 'spinner', 'aria-hidden': 'true' }), label);
  try {
    return await work();
  } finally {
    button.removeAttribute('aria-busy');
    button.disabled = false;
    button.replaceChildren(...saved);
  }
}

/** A definition list of [term, value] pairs. */
export function facts(pairs, props = {}) {
  const { class: extra, ...rest } = props;
  return h('dl', { class: extra ? `facts ${extra}` : 'facts', ...rest }, pairs.filter(Boolean).map(([term, value, testid]) => h('div', {},
    h('dt', {}, term),
    h('dd', { 'data-testid': testid ?? null }, value))));
}

/** A figure card of a summary row. */
export function card(label, value, testid, extra = {}) {
  return h('div', { class: 'card' },
    h('span', { class: 'label' }, label),
    h('span', { class: 'value', 'data-testid': testid ?? null, ...extra }, value));
}
