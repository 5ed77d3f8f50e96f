// A form generated from a tool's JSON Schema (an offer's `args_schema`): one labelled
// field per property. Strings, integers, numbers, booleans, enums and consts get their
// own controls; anything else is edited as JSON. The provider validates the arguments
// again: this only catches what is plain before a call is paid for.

import { h, field, setFieldError, clearFieldErrors } from './dom.js';

/**
 * Builds the fields of `schema` for a form. `files`: workspace paths offered for file
 * arguments. Answers {fields, read, showErrors}: `read()` gives {args} or {errors}.
 */
export function schemaFields(schema, { idPrefix, files = [] }) {
  const props = schema && typeof schema === 'object' && schema.properties && typeof schema.properties === 'object'
    ? schema.properties : {};
  const required = new Set(Array.isArray(schema?.required) ? schema.required.map(String) : []);
  const listId = `${idPrefix}-files`;
  const controls = [];
  const nodes = [];
  for (const [name, raw] of Object.entries(props)) {
    const prop = raw && typeof raw === 'object' ? raw : {};
    const id = `${idPrefix}-${name.replace(/[^A-Za-z0-9_-]/g, '_')}`;
    const control = controlFor(name, prop, required.has(name), id, listId);
    controls.push(control);
    nodes.push(control.node);
  }
  if (!controls.length) nodes.push(h('p', { class: 'muted' }, 'This tool takes no arguments.'));
  nodes.push(h('datalist', { id: listId }, files.map((f) => h('option', { value: f }))));

  return {
    fields: nodes,
    read(form) {
      clearFieldErrors(form);
      const args = {};
      const errors = [];
      for (const c of controls) {
        const result = c.read();
        if (result.error) errors.push({ id: c.id, field: c.name, message: result.error });
        else if (result.value !== undefined) args[c.name] = result.value;
      }
      for (const e of errors) setFieldError(form, e.id, e.message);
      return errors.length ? { errors } : { args };
    },
    /** Puts the API's field errors next to their fields; answers those it could not place. */
    showErrors(form, fieldErrors) {
      const rest = [];
      for (const e of fieldErrors) {
        const name = String(e.field ?? '').replace(/^\/?(args\/?)?/, '').replace(/^\//, '');
        const c = controls.find((x) => x.name === name);
        if (c) setFieldError(form, c.id, e.message);
        else rest.push(e);
      }
      return rest;
    },
    setFiles(paths) {
      const list = nodes[nodes.length - 1];
      list.replaceChildren(...paths.map((f) => h('option', { value: f })));
    },
  };
}

function describe(prop) {
  const parts = [];
  if (typeof prop.description === 'string') parts.push(prop.description);
  if (prop.format === 'workspace-path') parts.push('A path in the session’s workspace, such as data/input.txt.');
  if (typeof prop.minimum === 'number' || typeof prop.maximum === 'number') {
    parts.push(`From ${prop.minimum ?? '−∞'} to ${prop.maximum ?? '∞'}.`);
  }
  if (prop.default !== undefined) parts.push(`Default: ${JSON.stringify(prop.default)}.`);
  return parts.join(' ') || null;
}

function typeOf(prop) {
  const t = Array.isArray(prop.type) ? prop.type.find((x) => x !== 'null') : prop.type;
  return typeof t === 'string' ? t : null;
}

function controlFor(name, prop, isRequired, id, listId) {
  const label = typeof prop.title === 'string' && prop.title ? prop.title : name;
  const help = describe(prop);
  const testid = `arg-${name}`;
  const type = typeOf(prop);

  if (Array.isArray(prop.enum)) {
    const select = h('select', { name, required: isRequired, 'data-testid': testid },
      isRequired ? null : h('option', { value: '' }, '(none)'),
      prop.enum.map((v, i) => h('option', { value: String(i) }, typeof v === 'string' ? v : JSON.stringify(v))));
    return {
      id, name, node: field({ id, label, input: select, help, required: isRequired }),
      read: () => (select.value === '' ? (isRequired ? { error: 'choose a value' } : {}) : { value: prop.enum[Number(select.value)] }),
    };
  }

  if (Object.prototype.hasOwnProperty.call(prop, 'const')) {
    const box = h('input', { type: 'checkbox', name, 'data-testid': testid, checked: isRequired });
    const text = typeof prop.const === 'string' ? prop.const : JSON.stringify(prop.const);
    return {
      id, name,
      node: field({ id, label: [`${label} `, h('code', {}, text)], input: box, help, check: true }),
      read: () => (box.checked ? { value: prop.const } : isRequired ? { error: 'this argument is required' } : {}),
    };
  }

  if (type === 'boolean') {
    const box = h('input', { type: 'checkbox', name, 'data-testid': testid, checked: prop.default === true });
    return {
      id, name, node: field({ id, label, input: box, help, check: true }),
      read: () => (box.checked || isRequired ? { value: box.checked } : {}),
    };
  }

  if (type === 'integer' || type === 'number') {
    const input = h('input', {
      type: 'number', name, 'data-testid': testid, inputmode: type === 'integer' ? 'numeric' : 'decimal',
      step: type === 'integer' ? '1' : 'any', min: prop.minimum, max: prop.maximum,
      'aria-required': isRequired ? 'true' : null,
      value: typeof prop.default === 'number' ? String(prop.default) : null,
    });
    return {
      id, name, node: field({ id, label, input, help, required: isRequired }),
      read() {
        const text = input.value.trim();
        if (text === '') return isRequired ? { error: 'enter a number' } : {};
        const n = Number(text);
        if (!Number.isFinite(n)) return { error: 'not a number' };
        if (type === 'integer' && !Number.isInteger(n)) return { error: 'must be a whole number' };
        if (typeof prop.minimum === 'number' && n < prop.minimum) return { error: `must be at least ${prop.minimum}` };
        if (typeof prop.maximum === 'number' && n > prop.maximum) return { error: `must be at most ${prop.maximum}` };
        return { value: n };
      },
    };
  }

  if (type === 'array' || type === 'object') {
    const area = h('textarea', { name, rows: '3', 'data-testid': testid, 'aria-required': isRequired ? 'true' : null, class: 'mono' });
    return {
      id, name, node: field({ id, label, input: area, help: [help, `As JSON (${type}).`].filter(Boolean).join(' '), required: isRequired }),
      read() {
        const text = area.value.trim();
        if (text === '') return isRequired ? { error: 'this argument is required' } : {};
        try {
          return { value: JSON.parse(text) };
        } catch {
          return { error: `not valid JSON (${type} expected)` };
        }
      },
    };
  }

  // Strings, and properties without a type: text.
  const input = h('input', {
    type: 'text', name, 'data-testid': testid, autocomplete: 'off', spellcheck: 'false',
    list: prop.format === 'workspace-path' ? listId : null,
    maxlength: typeof prop.maxLength === 'number' ? prop.maxLength : null,
    'aria-required': isRequired ? 'true' : null,
    value: typeof prop.default === 'string' ? prop.default : null,
  });
  return {
    id, name, node: field({ id, label, input, help, required: isRequired }),
    read() {
      const text = input.value;
      if (text === '') return isRequired ? { error: 'this argument is required' } : {};
      if (typeof prop.minLength === 'number' && text.length < prop.minLength) return { error: `at least ${prop.minLength} characters` };
      if (prop.format === 'workspace-path' && (text.startsWith('/') || text.split('/').includes('..'))) {
        return { error: 'a path inside the workspace: not absolute, no “..”' };
      }
      if (text.startsWith('-') && prop['x-orien-allow-dash'] !== true) {
        return { error: 'may not start with “-” (the tool would read it as an option)' };
      }
      if (typeof prop.pattern === 'string') {
        try {
          if (!new RegExp(prop.pattern, 'u').test(text)) return { error: `must match ${prop.pattern}` };
        } catch { /* a pattern JavaScript cannot read: the provider checks it */ }
      }
      return { value: text };
    },
  };
}
