// Formatting for people: USDC amounts (by string and BigInt, never through a float),
// times in the user's locale, durations, and shortened ids.

const AMOUNT = /^(-?)(\d+)(?:\.(\d*))?$/;

/** Micro-USDC (BigInt) of a decimal USDC string such as "1.5" or "-0.000001". */
export function toMicros(text) {
  const m = AMOUNT.exec(String(text ?? '').trim());
  if (!m) return null;
  const frac = (m[3] ?? '').padEnd(6, '0');
  if (frac.length > 6 && /[1-9]/.test(frac.slice(6))) return null; // below a micro-USDC
  const micros = BigInt(m[2]) * 1000000n + BigInt(frac.slice(0, 6) || '0');
  return m[1] === '-' ? -micros : micros;
}

/** A decimal USDC string with exactly six decimals, from micros (BigInt). */
export function fromMicros(micros) {
  const negative = micros < 0n;
  const abs = negative ? -micros : micros;
  const whole = abs / 1000000n;
  const frac = String(abs % 1000000n).padStart(6, '0');
  return `${negative ? '-' : ''}${whole}.${frac}`;
}

/** Any API amount (string or BigInt micros) with exactly six decimals. */
export function usdc(value) {
  if (value === null || value === undefined || value === '') return '—';
  if (typeof value === 'bigint') return fromMicros(value);
  const micros = toMicros(value);
  return micros === null ? String(value) : fromMicros(micros);
}

/** Sum of API amounts, in micros. */
export function sumMicros(values) {
  return values.reduce((total, v) => total + (toMicros(v) ?? 0n), 0n);
}

/** The protocol's 90/7/3 split of a cumulative total (micros): fee and reserve round down. */
export function split(totalMicros) {
  const fee = (totalMicros * 7n) / 100n;
  const reserve = (totalMicros * 3n) / 100n;
  return { provider: totalMicros - fee - reserve, fee, reserve };
}

/** Whether a text is a USDC amount the API accepts (at most six decimals). */
export function isAmount(text) {
  return /^[0-9]{1,13}(\.[0-9]{1,6})?$/.test(String(text).trim());
}

/** Percentage (one decimal) of `part` in `whole`, both micros; null without a whole. */
export function percent(part, whole) {
  if (!whole || whole <= 0n) return null;
  const tenths = (part * 1000n) / whole;
  return `${tenths / 10n}.${tenths % 10n}`;
}

/** A time (ms since the epoch) in the user's locale. */
export function time(ms) {
  if (ms === null || ms === undefined) return '—';
  return new Date(Number(ms)).toLocaleString();
}

/** A chain time (Unix seconds) in the user's locale. */
export function chainTime(secs) {
  return secs === null || secs === undefined ? '—' : time(Number(secs) * 1000);
}

/** A duration in ms for people: "850 ms", "12.3 s", "4 min 05 s", "2 h 03 min", "3 d 4 h". */
export function duration(ms) {
  if (ms === null || ms === undefined) return '—';
  const n = Number(ms);
  if (n < 1000) return `${n} ms`;
  if (n < 60000) return `${(n / 1000).toFixed(1)} s`;
  const secs = Math.floor(n / 1000);
  const d = Math.floor(secs / 86400);
  const h = Math.floor((secs % 86400) / 3600);
  const m = Math.floor((secs % 3600) / 60);
  const s = secs % 60;
  if (d > 0) return `${d} d ${h} h`;
  if (h > 0) return `${h} h ${String(m).padStart(2, '0')} min`;
  return `${m} min ${String(s).padStart(2, '0')} s`;
}

/** A countdown in whole seconds: "1:02:03" or "4:05". */
export function countdown(secs) {
  const s = Math.max(0, Math.ceil(secs));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const r = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${r}` : `${m}:${r}`;
}

/** Bytes for people. */
export function bytes(n) {
  if (n === null || n === undefined) return '—';
  const v = Number(n);
  if (v < 1024) return `${v} B`;
  if (v < 1024 * 1024) return `${(v / 1024).toFixed(1)} KiB`;
  if (v < 1024 ** 3) return `${(v / 1024 / 1024).toFixed(1)} MiB`;
  return `${(v / 1024 ** 3).toFixed(1)} GiB`;
}

/** The start and end of a long id: "12D3KooW…x9Yz1a". */
export function shortId(id, head = 8, tail = 6) {
  const text = String(id ?? '');
  return text.length <= head + tail + 1 ? text : `${text.slice(0, head)}…${text.slice(-tail)}`;
}

/** A random hex string (an Idempotency-Key; works outside secure contexts too). */
export function randomKey() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}
