// Headless Chromium for the page tests: Debian's /usr/bin/chromium (.ci/run installs it), driven by
// playwright-core, which never downloads a browser of its own. The flags keep Chromium off the network
// this machine does not have (background updates, component updates, sync, QUIC).
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { chromium } from 'playwright-core';

const CHROMIUM = '/usr/bin/chromium';
const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/**
 * Chromium with `profile` as its --user-data-dir (a persistent context is how playwright takes one),
 * headless, a 1400x900 viewport; `options` add to or override playwright's launch options.
 */
export function launchChromium(profile, options = {}) {
  assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)`);
  return chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ARGS,
    viewport: { width: 1400, height: 900 },
    ...options,
  });
}
