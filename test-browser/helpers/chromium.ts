/*
 * Debian's Chromium, headless, driven by playwright-core (no browser
 * download): where it is, how it is launched, and pageResults(), which opens
 * a test page and returns what the page reported (protocol.ts). Launch
 * flags are those of /work/shared/reference/toolchain.md; playwright gives
 * each launch a fresh profile directory.
 */
import { existsSync } from "node:fs";
import { chromium, type Browser } from "playwright-core";

export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";

export const CHROMIUM_FLAGS = [
  "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
  "--disable-component-update", "--disable-sync",
];

export const chromiumPresent = (): boolean => existsSync(CHROMIUM_PATH);

export function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM_PATH, headless: true, chromiumSandbox: false, args: CHROMIUM_FLAGS, timeout: 60_000 });
}

/**
 * Opens url in a new page and waits (at most timeoutMs) until `ready` holds
 * in the page, then returns `read`'s answer. A page error, a failed load or
 * a timeout rejects, with what the page logged as errors.
 */
export async function inPage<T>(browser: Browser, url: string, ready: () => unknown, read: () => T, timeoutMs = 90_000): Promise<T> {
  const page = await browser.newPage();
  const logged: string[] = [];
  page.on("pageerror", (e) => logged.push(`page error: ${e.stack ?? e.message}`));
  page.on("console", (m) => { if (m.type() === "error") logged.push(`console: ${m.text()}`); });
  try {
    const response = await page.goto(url, { timeout: timeoutMs });
    if (response === null || !response.ok()) throw new Error(`HTTP ${response?.status()}`);
    await page.waitForFunction(ready, undefined, { timeout: timeoutMs, polling: 50 });
    return await page.evaluate(read);
  } catch (e) {
    (e as Error).message = `${url}: ${(e as Error).message}${logged.length ? `\n${logged.join("\n")}` : ""}`;
    throw e;
  } finally {
    await page.close();
  }
}

/** inPage for the test pages: window.__results, or a rejection with window.__error. */
export async function pageResults<T>(browser: Browser, url: string): Promise<T> {
  const got = await inPage(browser, url, () => window.__results ?? window.__error,
    () => ({ results: window.__results, error: window.__error }));
  if (got.error !== undefined) throw new Error(`${url} could not run its checks: ${got.error}`);
  return got.results as T;
}
