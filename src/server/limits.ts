/**
 * What bounds the work one client can make the server do: socket timeouts (a slow client is
 * cut off), a cap on concurrent decoding and inference with a bounded queue (503 beyond it),
 * and a check of each request's connection so that work for a client that has gone stops.
 */
import type { FastifyRequest } from 'fastify';
import os from 'node:os';
import { type DecodeOptions, type ImageHeader, MAX_PIXELS } from '../node/image.js';
import { ClientGoneError, HttpError } from './errors.js';

export interface ServerTimeouts {
  /** All request headers must have arrived this long after a request starts (Node's headersTimeout). */
  headersMs: number;
  /** The whole request, headers and body, must have arrived by then (requestTimeout). */
  requestMs: number;
  /** A socket with no traffic either way for this long is closed (connectionTimeout). */
  idleMs: number;
  /** A kept-alive connection with no request for this long is closed (keepAliveTimeout). */
  keepAliveMs: number;
}

/**
 * The defaults. Headers are at most a few KB, which any client sends at once: 10 s only cuts off
 * clients that dribble them (slowloris). 30 s for a whole request lets a 10 MB request (the
 * default cap) through at about 3 Mbit/s. A socket may sit silent while its request waits in
 * the queue and is classified; a batch of 64 large images can take tens of seconds, hence 60 s
 * idle. Between requests a kept-alive connection is closed after 5 s (Node's default;
 * Fastify's 72 s is meant for load balancers, and this server is reached directly).
 */
export const DEFAULT_TIMEOUTS: ServerTimeouts = {
  headersMs: 10_000,
  requestMs: 30_000,
  idleMs: 60_000,
  keepAliveMs: 5_000,
};

/** Requests waiting for an inference slot, at most (beyond: 503). */
export const DEFAULT_MAX_QUEUE = 64;

/** Requests decoding or classifying at once: twice the cores (sharp decodes off the main thread). */
export function defaultMaxConcurrent(): number {
  return 2 * os.availableParallelism();
}

/** The defaults with `partial` over them, checked; headersMs is cut to requestMs as Node requires. */
export function resolveTimeouts(partial: Partial<ServerTimeouts> = {}): ServerTimeouts {
  const t = { ...DEFAULT_TIMEOUTS, ...partial };
  for (const [k, v] of Object.entries(t)) {
    if (!(Number.isInteger(v) && v > 0)) throw new Error(`timeouts.${k} must be a positive integer (ms)`);
  }
  return { ...t, headersMs: Math.min(t.headersMs, t.requestMs) };
}

/**
 * How often Node looks for requests over headersMs or requestMs. Its default, 30 s, would let a
 * timed-out request live up to 30 s longer; the check is a walk over the open connections.
 */
export function checkIntervalMs(t: ServerTimeouts): number {
  return Math.max(25, Math.min(1000, Math.floor(t.headersMs / 4)));
}

/**
 * Whether the client of a request has gone: its socket is closed or closing (Node ends the
 * server side once the client has closed its side). The request's own 'close' and `destroyed`
 * are no use: Node closes a request once its body has been read. A property read rather than
 * a 'close' listener per request: under load, such per-request allocations measurably added to
 * the garbage that outlives the young generation (bench/serve-load.ts).
 */
export function clientGone(req: FastifyRequest): boolean {
  const socket = req.raw.socket as { destroyed?: boolean; writableEnded?: boolean } | null;
  return socket?.destroyed === true || socket?.writableEnded === true;
}

/** Throws ClientGoneError when the client of `req` has gone. */
export function checkClient(req: FastifyRequest): void {
  if (clientGone(req)) throw new ClientGoneError();
}

export interface LimiterStats {
  /** Slots: requests decoding or classifying at once. */
  concurrency: number;
  /** Most requests waiting for a slot. */
  queue: number;
  running: number;
  waiting: number;
  /** Since start: jobs finished (well or not), refused with 503, dropped for a gone client. */
  completed: number;
  rejected: number;
  abandoned: number;
}

interface Waiter {
  req: FastifyRequest;
  resolve: () => void;
  reject: (err: Error) => void;
}

/**
 * A semaphore with a bounded queue for the expensive part of a request: decoding (sharp, off
 * the main thread) and inference (on it). A waiting request whose client has gone is dropped
 * when its turn comes, or sooner when the queue is full; a running one stops at its next
 * checkClient().
 */
export class InferenceLimiter {
  private running = 0;
  private readonly waiting: Waiter[] = [];
  private counts = { completed: 0, rejected: 0, abandoned: 0 };

  constructor(
    readonly concurrency: number,
    readonly queue: number,
  ) {
    if (!(Number.isInteger(concurrency) && concurrency >= 1))
      throw new Error(`maxConcurrent must be a positive integer (got ${concurrency})`);
    if (!(Number.isInteger(queue) && queue >= 0))
      throw new Error(`maxQueue must be a non-negative integer (got ${queue})`);
  }

  stats(): LimiterStats {
    return {
      concurrency: this.concurrency,
      queue: this.queue,
      running: this.running,
      waiting: this.waiting.length,
      ...this.counts,
    };
  }

  /** Runs `job` for `req` in a slot, after waiting for one if need be; 503 when the queue is full. */
  async run<T>(req: FastifyRequest, job: () => Promise<T>): Promise<T> {
    if (clientGone(req)) {
      this.counts.abandoned++;
      throw new ClientGoneError();
    }
    if (this.running < this.concurrency) this.running++;
    else await this.enqueue(req);
    try {
      checkClient(req);
      return await job();
    } catch (err) {
      if (err instanceof ClientGoneError) this.counts.abandoned++;
      throw err;
    } finally {
      this.counts.completed++;
      this.running--;
      this.next();
    }
  }

  /** Waits for a slot (handed over by next(), which counts it as running). */
  private enqueue(req: FastifyRequest): Promise<void> {
    if (this.waiting.length >= this.queue) this.dropGone();
    if (this.waiting.length >= this.queue) {
      this.counts.rejected++;
      return Promise.reject(
        new HttpError(
          503,
          `the server is busy: ${this.running} requests are being classified and ${this.waiting.length} are waiting, the most it queues; try again in a second`,
          { 'retry-after': '1' },
        ),
      );
    }
    return new Promise((resolve, reject) => this.waiting.push({ req, resolve, reject }));
  }

  /** Hands free slots to the first waiters whose clients are still there. */
  private next(): void {
    while (this.running < this.concurrency && this.waiting.length > 0) {
      const w = this.waiting.shift()!;
      if (clientGone(w.req)) this.drop(w);
      else {
        this.running++;
        w.resolve();
      }
    }
  }

  /** Takes the waiters whose clients have gone out of the queue. */
  private dropGone(): void {
    for (let i = this.waiting.length - 1; i >= 0; i--) {
      if (clientGone(this.waiting[i].req)) this.drop(this.waiting.splice(i, 1)[0]);
    }
  }

  private drop(w: Waiter): void {
    this.counts.abandoned++;
    w.reject(new ClientGoneError());
  }
}

/**
 * What one request may make the server decode, checked against each image's header before any
 * pixel is decoded (node/image.ts readImageHeader), and enforced while decoding by sharp's
 * timeout: no file, however small, can hold an inference slot for long.
 */
export interface DecodeBudget {
  /** Decode SVG (off by default: its rendering cannot be bounded; see node/image.ts). */
  allowSvg: boolean;
  /** Most pixels of one image (its first page; only that is decoded). */
  maxPixels: number;
  /** Most pixels of one AVIF image: AV1 decodes some 25 times slower per pixel than PNG or JPEG. */
  maxAvifPixels: number;
  /**
   * Most pixels of all of one request's images together; an AVIF image's count as
   * maxPixels / maxAvifPixels times as many, its relative cost.
   */
  maxRequestPixels: number;
  /**
   * Whole seconds one image's decode may take before it is stopped (sharp's timeout, checked
   * as libvips works through the image; libheif decodes an AVIF in one call, which the timeout
   * ends only once it returns, so AVIF is held by its pixels).
   */
  imageSeconds: number;
  /** Seconds all of one request's decoding may take; the images left after that are refused. */
  requestSeconds: number;
}

/**
 * The defaults. A 7000x7000 PNG or JPEG decodes in about 0.05 s here and a 12 Mpx WebP in 0.5 s,
 * while a 7000x7000 AVIF takes 1.4 s (2 x AMD EPYC), hence 6 Mpx for AVIF. A request may decode
 * 20 full-size images' worth of pixels; one image 1 s, the whole request 5 s.
 */
export const DEFAULT_DECODE: DecodeBudget = {
  allowSvg: false,
  maxPixels: MAX_PIXELS,
  maxAvifPixels: 6_000_000,
  maxRequestPixels: 20 * MAX_PIXELS,
  imageSeconds: 1,
  requestSeconds: 5,
};

/** The defaults with `partial` over them, checked. */
export function resolveDecodeBudget(partial: Partial<DecodeBudget> = {}): DecodeBudget {
  const b = { ...DEFAULT_DECODE, ...partial };
  for (const k of [
    'maxPixels',
    'maxAvifPixels',
    'maxRequestPixels',
    'imageSeconds',
    'requestSeconds',
  ] as const) {
    if (!(Number.isInteger(b[k]) && b[k] > 0)) throw new Error(`decode.${k} must be a positive integer`);
  }
  return b;
}

/**
 * One request's share of the decode budget: its pixels so far and its deadline. The route
 * charges every image's header first (a request over budget is refused before any decoding),
 * then asks for each decode's timeout.
 */
export class DecodeAllowance {
  private pixels = 0;
  private readonly deadline: number;

  constructor(readonly budget: DecodeBudget) {
    this.deadline = Date.now() + budget.requestSeconds * 1000;
  }

  /** The options node/image.ts takes for reading a header. */
  get imageOptions(): DecodeOptions {
    const { allowSvg, maxPixels, maxAvifPixels } = this.budget;
    return { allowSvg, maxPixels, maxAvifPixels };
  }

  /** Counts an image against the request's pixels; 413 once they are spent. */
  charge(header: ImageHeader, name: string): void {
    const { maxPixels, maxAvifPixels, maxRequestPixels } = this.budget;
    const weight = header.format === 'avif' ? maxPixels / maxAvifPixels : 1;
    this.pixels += header.width * header.height * weight;
    if (this.pixels > maxRequestPixels)
      throw new HttpError(
        413,
        `${name}: the request's images hold more than ${maxRequestPixels / 1e6} million pixels together, the most one request may decode; send fewer or smaller images`,
      );
  }

  /** The whole seconds the next decode may take (sharp's timeout); 413 once the request's time is spent. */
  seconds(name: string): number {
    const left = (this.deadline - Date.now()) / 1000;
    if (left <= 0)
      throw new HttpError(
        413,
        `${name}: decoding this request's images took more than ${this.budget.requestSeconds} s, the most one request may take; send fewer or smaller images`,
      );
    return Math.max(1, Math.min(this.budget.imageSeconds, Math.ceil(left)));
  }
}
