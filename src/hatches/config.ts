/**
 * The config hatch: the effective configuration, the agent's and Node's versions, every patch with
 * the module version it patched (or why not), and the environment, every secret redacted
 * (./redact.ts). The token itself never appears.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { jsonPage } from './pages';
import { redactEnv, redactValue } from './redact';
import type { HatchDeps, Reply } from './reply';

let agentVersion: string | undefined;
function ownVersion(): string {
  if (agentVersion === undefined) {
    try {
      // dist/src/hatches/config.js -> the package root
      agentVersion = String(
        JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', '..', 'package.json'), 'utf8')).version,
      );
    } catch {
      agentVersion = 'unknown';
    }
  }
  return agentVersion;
}

export function configHatch(deps: HatchDeps): Reply {
  const { config } = deps;
  const token = config.hatchToken;
  const json = {
    agent: { name: 'hatch-agent', version: ownVersion() },
    node: process.version,
    pid: process.pid,
    config: {
      ...config,
      hatchToken: token === undefined ? undefined : '[redacted]',
      hatchHealthUrls: config.hatchHealthUrls.map((u) => redactValue(u, token)),
      // a pre-signed upload URL is a credential: its query is never shown
      flightRecorder:
        config.flightRecorder?.kind === 'url'
          ? { kind: 'url', url: config.flightRecorder.url.replace(/\?.*$/, '?[redacted]') }
          : config.flightRecorder,
    },
    patches: deps.patches,
    env: redactEnv(process.env, token),
  };
  return { status: 200, json, html: jsonPage('effective configuration', json) };
}
