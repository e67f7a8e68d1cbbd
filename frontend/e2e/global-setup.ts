/**
 * Browser-test setup: writes the log directories with our own writer (e2e/make_logs.py, e2e/make_many_logs.py) and
 * with real Keras training recorded by ExplainerCallback (e2e/make_keras_logs.py), starts four real TensorBoard processes on
 * them (e2e/serve.py), waits until every record is loaded, and hands the URLs to the tests. Environment:
 * MMX_PYTHON (default ../.venv/bin/python), MMX_E2E_LOGS (reuse a log directory), CHROMIUM (default
 * /usr/bin/chromium).
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { TestProject } from 'vitest/node';

const here = import.meta.dirname;
const repo = resolve(here, '../..');

declare module 'vitest' {
  export interface ProvidedContext {
    demoUrl: string;
    bigUrl: string;
    kerasUrl: string;
    manyUrl: string;
    chromium: string;
    logs: string;
  }
}

function startServer(python: string, logdir: string): Promise<{ proc: ChildProcess; url: string }> {
  return new Promise((ok, fail) => {
    const proc = spawn(python, [join(here, 'serve.py'), logdir], { cwd: repo, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    const timer = setTimeout(() => fail(new Error(`TensorBoard did not start in 120 s:\n${err}`)), 120_000);
    proc.stdout.on('data', (d) => {
      out += d;
      const line = out.split('\n').find((l) => l.startsWith('{'));
      if (line) {
        clearTimeout(timer);
        ok({ proc, url: (JSON.parse(line) as { url: string }).url });
      }
    });
    proc.stderr.on('data', (d) => (err += d));
    proc.on('exit', (code) => fail(new Error(`TensorBoard exited with ${code}:\n${err}`)));
  });
}

async function getJson(url: string): Promise<unknown> {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`${res.status} ${url}`);
  return res.json();
}

/** Waits until the server lists `runs` runs and the heatmap of each has `minSteps` steps for every layer. */
async function waitLoaded(base: string, runs: number, minSteps: number, timeoutMs = 180_000): Promise<void> {
  const api = `${base}/data/plugin/matmul_explainer`;
  const t0 = Date.now();
  let last = '';
  while (Date.now() - t0 < timeoutMs) {
    try {
      const r = (await getJson(`${api}/runs`)) as { runs: { run: string }[] };
      if (r.runs.length >= runs) {
        let ready = true;
        for (const { run } of r.runs) {
          const h = (await getJson(`${api}/heatmap?run=${encodeURIComponent(run)}&role=forward`)) as { steps: number[]; values: (number | null)[][] };
          const full = h.steps.length >= minSteps && h.values.every((row) => row.every((v) => v !== null));
          if (!full) {
            ready = false;
            last = `${run}: ${h.steps.length} steps`;
          }
        }
        if (ready) return;
      } else last = `${r.runs.length} runs`;
    } catch (e) {
      last = String(e);
    }
    await new Promise((res) => setTimeout(res, 1000));
  }
  throw new Error(`TensorBoard at ${base} did not load the logs in time (${last})`);
}

export default async function setup(project: TestProject) {
  const python = process.env.MMX_PYTHON ?? join(repo, '.venv/bin/python');
  const chromium = process.env.CHROMIUM ?? '/usr/bin/chromium';
  if (!existsSync(chromium)) {
    throw new Error(`No Chromium at ${chromium}: install it (Debian: apt-get install chromium) or set CHROMIUM.`);
  }
  const ownLogs = !process.env.MMX_E2E_LOGS;
  const logs = process.env.MMX_E2E_LOGS ?? mkdtempSync(join(tmpdir(), 'mmx-e2e-'));
  if (!existsSync(join(logs, 'demo')) || !existsSync(join(logs, 'big'))) {
    const t0 = Date.now();
    execFileSync(python, [join(here, 'make_logs.py'), logs], { cwd: repo, stdio: ['ignore', 'inherit', 'pipe'], timeout: 900_000 });
    console.log(`e2e: wrote logs to ${logs} in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  }
  if (!existsSync(join(logs, 'keras'))) {
    const t0 = Date.now();
    execFileSync(python, [join(here, 'make_keras_logs.py'), logs], { cwd: repo, stdio: ['ignore', 'inherit', 'pipe'], timeout: 600_000 });
    console.log(`e2e: wrote the Keras logs to ${join(logs, 'keras')} in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  }
  if (!existsSync(join(logs, 'many'))) {
    const t0 = Date.now();
    execFileSync(python, [join(here, 'make_many_logs.py'), logs], { cwd: repo, stdio: ['ignore', 'inherit', 'pipe'], timeout: 600_000 });
    console.log(`e2e: wrote the many-layer logs to ${join(logs, 'many')} in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  }
  const demo = await startServer(python, join(logs, 'demo'));
  const big = await startServer(python, join(logs, 'big'));
  const keras = await startServer(python, join(logs, 'keras'));
  const many = await startServer(python, join(logs, 'many'));
  const servers = [demo, big, keras, many];
  try {
    // The Keras runs: batch1/train has 6 recorded steps, nonfinite/train 4.
    // The many-layer runs: 3 recorded steps each.
    await Promise.all([waitLoaded(demo.url, 3, 10), waitLoaded(big.url, 1, 200), waitLoaded(keras.url, 2, 4), waitLoaded(many.url, 2, 3)]);
  } catch (e) {
    for (const sv of servers) sv.proc.kill();
    if (ownLogs) rmSync(logs, { recursive: true, force: true });
    throw e;
  }
  project.provide('demoUrl', demo.url);
  project.provide('bigUrl', big.url);
  project.provide('kerasUrl', keras.url);
  project.provide('manyUrl', many.url);
  project.provide('chromium', chromium);
  project.provide('logs', logs);
  return () => {
    for (const sv of servers) sv.proc.kill('SIGTERM');
    if (ownLogs) rmSync(logs, { recursive: true, force: true });
  };
}
