// Builds the JavaScript widget handler into a component with
// componentize-js, with every WASI feature disabled: the component imports
// nothing but the widgets:handler interfaces.
//   node build.mjs [OUT.wasm]   (default: ../../target/handlers/widget_handler_js.wasm)
import { componentize } from '@bytecodealliance/componentize-js';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const out = resolve(process.argv[2] ?? resolve(here, '../../target/handlers/widget_handler_js.wasm'));
const { component } = await componentize({
  sourcePath: resolve(here, 'handler.js'),
  witPath: resolve(here, '../../wit'),
  worldName: 'widget-handler',
  disableFeatures: ['stdio', 'random', 'clocks', 'http', 'fetch-event'],
});
await mkdir(dirname(out), { recursive: true });
await writeFile(out, component);
console.log(`wrote ${out} (${component.length} bytes)`);
