// Bounded waiting: every wait here has a deadline and a fixed pause between
// tries, so a broken build fails fast instead of hanging the test run.

import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Calls `check` until it stops throwing (or returns something other than
 * false), or the deadline passes; then throws the last failure.
 */
export async function eventually(check, { timeout = 10_000, interval = 100, what = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  let lastError;
  for (let attempt = 0; ; attempt += 1) {
    try {
      const result = await check();
      if (result !== false) return result;
      lastError = new Error(`${what}: not yet true`);
    } catch (error) {
      lastError = error;
    }
    if (Date.now() + interval > deadline) break;
    await sleep(interval);
  }
  lastError.message = `gave up after ${timeout} ms waiting for ${what}: ${lastError.message}`;
  throw lastError;
}
