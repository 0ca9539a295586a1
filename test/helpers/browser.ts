/**
 * Debian's Chromium driven by playwright-core (which never downloads a browser). Browser tests
 * skip only when Chromium is absent and CI is not set; in CI a missing browser is a failure.
 */
import { existsSync } from 'node:fs';
import type { TestContext } from 'node:test';
import { chromium, type Browser } from 'playwright-core';

export const chromiumPath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** Launches headless Chromium, or skips the test (outside CI) when it is not installed. */
export async function launchBrowser(t: TestContext): Promise<Browser | undefined> {
  if (!existsSync(chromiumPath)) {
    if (process.env.CI) throw new Error(`Chromium is required in CI but ${chromiumPath} does not exist`);
    t.skip(`no browser at ${chromiumPath} (install Debian's chromium to run browser tests)`);
    return undefined;
  }
  const browser = await chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  t.after(() => browser.close());
  return browser;
}
