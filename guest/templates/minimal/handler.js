// A minimal widget handler: the contract's shape, and little more. It
// stores each create or update as the widget's own fields, removes a
// widget on delete, and rejects what is not a widget request.
// `widget-host check handler.wasm` lists what the full widget contract
// asks beyond this (`new-handler` without `--minimal` writes a complete
// one). Built into a component by build.mjs with componentize-js.

function reject(reason) {
  // A thrown value is the `err` of `result<plan, rejection>`.
  throw { payload: { reason } };
}

function parse(bytes) {
  try {
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch (e) {
    return reject(`request is not valid JSON: ${e.message}`);
  }
}

// Requests about one widget are handled in order; one without a widget id
// runs alone.
export function orderingKey(request) {
  try {
    const id = JSON.parse(new TextDecoder().decode(request)).widgetId;
    return typeof id === 'string' ? id : undefined;
  } catch (e) {
    return undefined;
  }
}

export function handle(request, ctx) {
  const r = parse(request);
  for (const field of ['type', 'widgetId', 'owner']) {
    if (typeof r?.[field] !== 'string') reject(`missing required field \`${field}\``);
  }
  const key = ctx.destination === 'table'
    ? r.widgetId
    : `widgets/${r.owner.toLowerCase().replaceAll(' ', '-')}/${r.widgetId}`;
  if (r.type === 'delete') return { kind: 'delete', operations: [{ tag: 'delete', val: key }] };
  if (r.type !== 'create' && r.type !== 'update') {
    reject(`field \`type\` must be create, update or delete, not ${JSON.stringify(r.type)}`);
  }
  const document = JSON.stringify({ id: r.widgetId, owner: r.owner, label: r.label, description: r.description });
  return { kind: r.type, operations: [{ tag: 'put', val: { key, document } }] };
}
