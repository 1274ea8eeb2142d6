// Evaluate every flag of a flagd document for every context with @openfeature/flagd-core.
// Input (stdin, JSON): {"config": "<flagd JSON text>", "types": {flagKey: "boolean"|"string"|"number"|"object"},
//   "defaults": {flagKey: default}, "contexts": [context, ...]}. A context's `targeting_key` is sent as
//   `targetingKey`, as the OpenFeature providers do.
// Output (stdout, JSON): per context, per flag key: [value, variant, reason, errorCode].
import { FlagdCore } from '@openfeature/flagd-core';

const silent = { debug() {}, info() {}, warn() {}, error() {} };
const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const input = JSON.parse(Buffer.concat(chunks).toString('utf8'));

const core = new FlagdCore(undefined, silent);
core.setConfigurations(input.config);
const resolvers = {
  boolean: (k, d, c) => core.resolveBooleanEvaluation(k, d, c, silent),
  string: (k, d, c) => core.resolveStringEvaluation(k, d, c, silent),
  number: (k, d, c) => core.resolveNumberEvaluation(k, d, c, silent),
  object: (k, d, c) => core.resolveObjectEvaluation(k, d, c, silent),
};
const out = [];
for (const raw of input.contexts) {
  const context = { ...raw };
  if ('targeting_key' in context) {
    context.targetingKey = context.targeting_key;
    delete context.targeting_key;
  }
  const row = {};
  for (const [key, type] of Object.entries(input.types)) {
    const def = input.defaults[key];
    let r;
    try {
      r = resolvers[type](key, def, context);
    } catch (e) {
      r = { value: def, reason: 'ERROR', errorCode: 'THROWN:' + e.message };
    }
    row[key] = [r.value === undefined ? def : r.value, r.variant ?? null, r.reason ?? null, r.errorCode ?? null];
  }
  out.push(row);
}
process.stdout.write(JSON.stringify(out));
