// Builds the handler into handler.wasm with componentize-js, with every WASI
// feature disabled: the component imports nothing but the widgets:handler
// interfaces. Run `npm ci` once first.
//   node build.mjs [OUT.wasm]
import { componentize } from '@bytecodealliance/componentize-js';
import { writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const out = resolve(process.argv[2] ?? resolve(here, 'handler.wasm'));
const { component } = await componentize({
  sourcePath: resolve(here, 'handler.js'),
  witPath: resolve(here, 'wit'),
  worldName: 'widget-handler',
  disableFeatures: ['stdio', 'random', 'clocks', 'http', 'fetch-event'],
});
await writeFile(out, component);
console.log(`wrote ${out} (${component.length} bytes)`);
