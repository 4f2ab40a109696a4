// Starts what the browser tests need and stops it again: a database container
// and the books-ms service binary, on free loopback ports, with a database
// name of their own. Nothing here is shared between test files.
//
// Settings (environment):
//   BOOKS_MS_BIN     the service binary        (default: $CARGO_TARGET_DIR or <repo>/target, then debug/books-ms)
//   BOOKS_DB_IMAGE   the database image        (default: books-lab/ferretdb:1.24.2)
//   DOCKER           the docker client to use  (default: /usr/bin/docker, Debian's)

import { execFile, spawn, spawnSync } from 'node:child_process';
import { accessSync, constants, createWriteStream, mkdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

export const TESTS_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const REPO_DIR = path.resolve(TESTS_DIR, '..', '..');
export const CLIENT_DIR = path.join(REPO_DIR, 'client');
export const ARTIFACTS_DIR = path.join(TESTS_DIR, 'artifacts');

const DOCKER = process.env.DOCKER || '/usr/bin/docker';
const DB_IMAGE = process.env.BOOKS_DB_IMAGE || 'books-lab/ferretdb:1.24.2';
// cargo's target dir: CARGO_TARGET_DIR when set (relative to the repo, where
// scripts/test.sh runs cargo), else <repo>/target.
const TARGET_DIR = process.env.CARGO_TARGET_DIR
  ? path.resolve(REPO_DIR, process.env.CARGO_TARGET_DIR)
  : path.join(REPO_DIR, 'target');
const SERVICE_BIN = process.env.BOOKS_MS_BIN || path.join(TARGET_DIR, 'debug', 'books-ms');

// A cold container plus a service that connects lazily is up in a few
// seconds here; 30 s leaves room for a loaded 2-core CI machine.
const READY_TIMEOUT_MS = 30_000;
const DOCKER_TIMEOUT_MS = 60_000;
const STOP_GRACE_MS = 5_000;

async function docker(args, { timeout = DOCKER_TIMEOUT_MS } = {}) {
  try {
    const { stdout } = await execFileAsync(DOCKER, args, { timeout });
    return stdout.trim();
  } catch (error) {
    const detail = (error.stderr || error.message || '').toString().trim();
    throw new Error(`docker ${args[0]} failed (${DOCKER} ${args.join(' ')}): ${detail}`);
  }
}

/** A TCP port that was free on 127.0.0.1 a moment ago. */
export async function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

function requireExecutable(file, hint) {
  try {
    accessSync(file, constants.X_OK);
  } catch {
    throw new Error(`${file} is missing or not executable: ${hint}`);
  }
}

function tail(file, lines = 30) {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/**
 * Starts a database container and the service. `name` labels the logs;
 * `env` is added to the service's environment (e.g. WRITE_TOKEN).
 * Returns { baseUrl, dbName, stopDatabase(), stop() }.
 */
export async function startStack(name, { env = {} } = {}) {
  requireExecutable(SERVICE_BIN, 'build the service first (cargo build), or set BOOKS_MS_BIN');
  requireExecutable(DOCKER, 'install a docker client, or set DOCKER');
  mkdirSync(ARTIFACTS_DIR, { recursive: true });

  const stack = { container: null, child: null, baseUrl: null, dbName: null, stopped: false };
  // If the test process dies before its `after` hook, still leave nothing behind.
  const onExit = () => stopSync(stack);
  process.once('exit', onExit);

  try {
    stack.container = await docker([
      'run', '-d', '--label', 'books-ms.client-tests=1', '-p', '127.0.0.1::27017', DB_IMAGE,
    ]);
    const mapping = await docker(['port', stack.container, '27017/tcp']);
    const dbPort = Number(mapping.split('\n')[0].split(':').pop());
    if (!Number.isInteger(dbPort) || dbPort <= 0) throw new Error(`unexpected docker port output: ${mapping}`);

    const port = await freePort();
    stack.baseUrl = `http://127.0.0.1:${port}`;
    stack.dbName = `books_client_${name.replace(/\W/g, '_')}_${process.pid}_${Date.now().toString(36)}`;
    const logFile = path.join(ARTIFACTS_DIR, `service-${name}.log`);
    const log = createWriteStream(logFile);
    await new Promise((resolve) => log.once('open', resolve));
    stack.child = spawn(SERVICE_BIN, [], {
      env: {
        ...process.env,
        LISTEN_ADDR: `127.0.0.1:${port}`,
        MONGODB_URI: `mongodb://127.0.0.1:${dbPort}`,
        DB_DBNAME: stack.dbName,
        STATIC_DIR: CLIENT_DIR,
        ...env,
      },
      stdio: ['ignore', log, log],
    });
    let exited = null;
    stack.child.once('exit', (code, signal) => { exited = signal ? `signal ${signal}` : `code ${code}`; });

    const deadline = Date.now() + READY_TIMEOUT_MS;
    let last = 'no answer yet';
    for (;;) {
      if (exited) throw new Error(`books-ms exited with ${exited} before it was ready. Its log:\n${tail(logFile)}`);
      try {
        const response = await fetch(`${stack.baseUrl}/ready`, { signal: AbortSignal.timeout(2_000) });
        if (response.status === 200) break;
        last = `GET /ready answered ${response.status}`;
      } catch (error) {
        last = error.cause?.code ?? error.message;
      }
      if (Date.now() > deadline) {
        throw new Error(`books-ms was not ready within ${READY_TIMEOUT_MS / 1000} s (${last}). Its log:\n${tail(logFile)}`);
      }
      await sleep(200);
    }
  } catch (error) {
    await stop(stack);
    process.removeListener('exit', onExit);
    throw error;
  }

  return {
    baseUrl: stack.baseUrl,
    dbName: stack.dbName,
    /** Stops the database container (the service keeps running). */
    async stopDatabase() {
      await docker(['stop', '--time', '2', stack.container]);
    },
    async stop() {
      await stop(stack);
      process.removeListener('exit', onExit);
    },
  };
}

async function stop(stack) {
  if (stack.stopped) return;
  stack.stopped = true;
  const child = stack.child;
  if (child && child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    const graceful = await Promise.race([exited.then(() => true), sleep(STOP_GRACE_MS).then(() => false)]);
    if (!graceful) {
      child.kill('SIGKILL');
      await Promise.race([exited, sleep(STOP_GRACE_MS)]);
    }
  }
  if (stack.container) {
    await docker(['rm', '-f', '-v', stack.container]).catch((error) => {
      console.error(`could not remove the test database container ${stack.container}: ${error.message}`);
    });
  }
}

function stopSync(stack) {
  if (stack.stopped) return;
  stack.stopped = true;
  if (stack.child && stack.child.exitCode === null) stack.child.kill('SIGKILL');
  if (stack.container) spawnSync(DOCKER, ['rm', '-f', '-v', stack.container], { timeout: 20_000, stdio: 'ignore' });
}
