// A local Lambda runtime for the failover function's bundle, as `cdk synth` stages it:
// node lambda-runtime.mjs BUNDLE_DIR PORT FUNCTION_ARN TIMEOUT_SECONDS
// POST /invoke {"payload": …, "qualifier": "agents"|null, "id": "…"} runs the handler once with a
// Lambda-like context and answers {"result": …} or {"errorType", "errorMessage"}. Concurrent
// invocations run concurrently (Lambda would give each its own environment; the handler keeps no
// state between invocations that matters). The handler's own logs (Powertools JSON) go to
// stdout, framed by {"runtime": "start"|"end"|"error"} lines.
import { createServer } from 'node:http';
import { join } from 'node:path';

const [dir, portText, arn, timeoutText] = process.argv.slice(2);
const mod = await import(join(dir, 'index.mjs'));
const timeoutMs = Number(timeoutText) * 1000;
const say = (o) => process.stdout.write(`${JSON.stringify({ ...o, at: Date.now() })}\n`);

createServer((req, res) => {
  let body = '';
  req.on('data', (d) => (body += d));
  req.on('end', async () => {
    let call;
    try {
      call = JSON.parse(body);
    } catch {
      return res.writeHead(400).end('bad request');
    }
    const started = Date.now();
    const context = {
      functionName: arn.split(':').at(-1),
      functionVersion: '$LATEST',
      invokedFunctionArn: call.qualifier ? `${arn}:${call.qualifier}` : arn,
      memoryLimitInMB: '256',
      awsRequestId: call.id,
      logGroupName: '/aws/lambda/local',
      logStreamName: 'local',
      callbackWaitsForEmptyEventLoop: true,
      getRemainingTimeInMillis: () => Math.max(0, started + timeoutMs - Date.now()),
    };
    say({ runtime: 'start', id: call.id, payload: call.payload, qualifier: call.qualifier ?? null });
    try {
      const result = await mod.handler(call.payload, context);
      say({ runtime: 'end', id: call.id, result });
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ result }));
    } catch (e) {
      say({ runtime: 'error', id: call.id, errorType: e?.name ?? 'Error', errorMessage: String(e?.message ?? e) });
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ errorType: e?.name ?? 'Error', errorMessage: String(e?.message ?? e) }));
    }
  });
}).listen(Number(portText), '127.0.0.1', () => say({ runtime: 'ready' }));
