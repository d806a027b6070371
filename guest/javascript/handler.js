// The widget handler in JavaScript: SPEC.md 1-3, as the built-in Rust
// handler, with one variation: a request may name at most MAX_ATTRIBUTES
// other attributes.
//
// Built into a component by build.mjs with componentize-js. The imports
// below are the host functions of wit/handler.wit.
import { get } from 'widgets:handler/store@0.1.0';
import { log } from 'widgets:handler/log@0.1.0';

const KINDS = {
  create: 'create', update: 'update', delete: 'delete',
  WidgetCreateRequest: 'create', WidgetUpdateRequest: 'update', WidgetDeleteRequest: 'delete',
};
const RESERVED = ['id', 'owner', 'label', 'description'];
const OWN_FIELDS = ['id', 'owner', 'label', 'description'];
// The variation.
const MAX_ATTRIBUTES = 30;

class Invalid extends Error {}

function reject(reason) {
  // A thrown value is the `err` of `result<plan, rejection>`.
  throw { payload: { reason } };
}

function parse(bytes) {
  let text;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch (e) {
    throw new Invalid('request is not valid JSON: it is not UTF-8');
  }
  if (text.trim() === '') throw new Invalid('request is empty');
  let r;
  try {
    r = JSON.parse(text);
  } catch (e) {
    throw new Invalid(`request is not valid JSON: ${e.message}`);
  }
  if (r === null || typeof r !== 'object' || Array.isArray(r)) throw new Invalid('request must be a JSON object');
  for (const field of ['type', 'requestId', 'widgetId', 'owner']) {
    if (!(field in r)) throw new Invalid(`missing required field \`${field}\``);
    if (typeof r[field] !== 'string') throw new Invalid(`field \`${field}\` must be a string`);
  }
  if (!(r.type in KINDS) || !Object.hasOwn(KINDS, r.type)) throw new Invalid(`field \`type\` must be create, update or delete, not ${JSON.stringify(r.type)}`);
  if (r.widgetId === '' || r.widgetId.includes('/')) throw new Invalid('field `widgetId` must be non-empty and without /');
  if (!/^[A-Za-z ]+$/.test(r.owner)) throw new Invalid('field `owner` must be letters and spaces only');
  for (const field of ['label', 'description']) {
    if (r[field] !== undefined && r[field] !== null && typeof r[field] !== 'string') {
      throw new Invalid(`field \`${field}\` must be a string or null`);
    }
  }
  const attrs = r.otherAttributes === undefined ? [] : r.otherAttributes;
  if (!Array.isArray(attrs)) throw new Invalid('field `otherAttributes` must be an array');
  if (attrs.length > MAX_ATTRIBUTES) throw new Invalid(`more than ${MAX_ATTRIBUTES} otherAttributes`);
  const pairs = attrs.map((a, i) => {
    if (a === null || typeof a !== 'object' || Array.isArray(a)) throw new Invalid(`otherAttributes[${i}] must be an object`);
    for (const part of ['name', 'value']) {
      if (typeof a[part] !== 'string') throw new Invalid(`otherAttributes[${i}].${part} must be a string`);
    }
    if (a.name === '') throw new Invalid(`otherAttributes[${i}].name must not be empty`);
    if (RESERVED.includes(a.name)) throw new Invalid(`otherAttributes[${i}].name ${JSON.stringify(a.name)} is reserved`);
    return [a.name, a.value];
  });
  return { ...r, kind: KINDS[r.type], pairs };
}

function readWidget(text, table) {
  const doc = JSON.parse(text);
  const widget = { attrs: new Map(), extra: {} };
  for (const [name, value] of Object.entries(doc)) {
    if (OWN_FIELDS.includes(name)) widget[name] = value;
    else if (table) widget.attrs.set(name, value);
    else if (name === 'otherAttributes') for (const p of value || []) widget.attrs.set(p.name, p.value);
    else widget.extra[name] = value;
  }
  return widget;
}

function writeWidget(widget, table) {
  const doc = {};
  for (const name of OWN_FIELDS) if (widget[name] !== undefined && widget[name] !== null) doc[name] = widget[name];
  if (table) for (const [n, v] of widget.attrs) doc[n] = v;
  else if (widget.attrs.size > 0) doc.otherAttributes = [...widget.attrs].map(([name, value]) => ({ name, value }));
  for (const [n, v] of Object.entries(widget.extra)) if (!(n in doc)) doc[n] = v;
  return JSON.stringify(doc);
}

function put(kind, key, widget, table) {
  return { kind, operations: [{ tag: 'put', val: { key, document: writeWidget(widget, table) } }] };
}

// A request without a string widgetId is rejected by handle and touches
// nothing: it gets a key of its own (FNV-1a of its bytes) rather than none,
// so that it never waits behind every widget in flight.
export function orderingKey(request) {
  try {
    const r = JSON.parse(new TextDecoder().decode(request));
    if (typeof r?.widgetId === 'string') return r.widgetId;
  } catch (e) {
    // unreadable: keyed below
  }
  let hash = 0x811c9dc5;
  for (const byte of request) hash = Math.imul(hash ^ byte, 0x01000193) >>> 0;
  return '!no-widget-id:' + hash.toString(16).padStart(8, '0');
}

export function handle(request, ctx) {
  let r;
  try {
    r = parse(request);
  } catch (e) {
    if (e instanceof Invalid) reject(e.message);
    throw e;
  }
  const table = ctx.destination === 'table';
  const slug = r.owner.toLowerCase().replaceAll(' ', '-');
  const key = table ? r.widgetId : `widgets/${slug}/${r.widgetId}`;
  if (r.kind === 'create') {
    const widget = { id: r.widgetId, owner: r.owner, label: r.label, description: r.description, attrs: new Map(r.pairs), extra: {} };
    return put('create', key, widget, table);
  }
  let stored;
  try {
    stored = get(key);
  } catch (e) {
    reject(`cannot read widget at ${key}: ${e.payload ?? e}`);
  }
  if (stored === undefined || stored === null) {
    log('warn', `${r.kind} request ${r.requestId} (${ctx.key}): widget ${r.widgetId} not found at ${key}; nothing changed`);
    return { kind: r.kind, operations: [] };
  }
  if (r.kind === 'delete') return { kind: 'delete', operations: [{ tag: 'delete', val: key }] };
  const widget = readWidget(stored, table);
  for (const field of ['label', 'description']) {
    if (r[field] === '') delete widget[field];
    else if (typeof r[field] === 'string') widget[field] = r[field];
  }
  for (const [name, value] of r.pairs) {
    if (value === '') widget.attrs.delete(name);
    else widget.attrs.set(name, value);
  }
  return put('update', key, widget, table);
}
