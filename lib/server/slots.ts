/**
 * Slots: `parallel` sessions over one model, each serving one request at a time. Requests beyond them
 * wait in a FIFO queue of at most `maxQueue`; beyond that they are refused (429). A request that is
 * cancelled while it waits (its client left) leaves the queue. A free slot is given to the next
 * request in order; among several free slots, the one whose KV cache shares the longest prefix with
 * the request's prompt (so that the prefix is not evaluated again).
 */
import type { Session } from '../session';
import { HttpError } from './http-error';

export class Slot {
  busy = false;
  /** Requests this slot has served. */
  served = 0;
  constructor(readonly id: number, readonly session: Session) {}
}

interface Waiter {
  prompt: number[];
  resolve(slot: Slot): void;
  reject(err: unknown): void;
}

export class SlotPool {
  private readonly queue: Waiter[] = [];
  private closed = false;

  constructor(readonly slots: Slot[], readonly maxQueue: number) {}

  get busy(): number {
    return this.slots.reduce((n, s) => n + (s.busy ? 1 : 0), 0);
  }

  get queued(): number {
    return this.queue.length;
  }

  /**
   * A free slot for this prompt, now or when one frees up. Throws HttpError 429 when every slot is busy
   * and the queue is full; rejects with `signal.reason` when the signal aborts first.
   */
  acquire(prompt: number[], signal?: AbortSignal): Promise<Slot> {
    if (this.closed) return Promise.reject(new HttpError(503, 'the server is shutting down'));
    signal?.throwIfAborted();
    const free = this.pick(prompt);
    if (free) {
      free.busy = true;
      return Promise.resolve(free);
    }
    if (this.queue.length >= this.maxQueue) {
      return Promise.reject(new HttpError(429, `all ${this.slots.length} slots are busy and ${this.queue.length} requests are waiting; try again later`, null, 'queue_full'));
    }
    return new Promise<Slot>((resolve, reject) => {
      const waiter: Waiter = {
        prompt,
        resolve: (slot) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(slot);
        },
        reject: (err) => {
          signal?.removeEventListener('abort', onAbort);
          reject(err);
        },
      };
      const onAbort = () => {
        const i = this.queue.indexOf(waiter);
        if (i >= 0) this.queue.splice(i, 1);
        reject(signal!.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.queue.push(waiter);
    });
  }

  /** Gives the slot back: to the first waiting request, or free. */
  release(slot: Slot): void {
    slot.served++;
    const next = this.queue.shift();
    if (next && !this.closed) {
      next.resolve(slot);  // stays busy
      return;
    }
    slot.busy = false;
  }

  /** Refuses every waiting request and every later one. */
  close(): void {
    this.closed = true;
    for (const w of this.queue.splice(0)) w.reject(new HttpError(503, 'the server is shutting down'));
  }

  private pick(prompt: number[]): Slot | undefined {
    let best: Slot | undefined;
    let bestCommon = -1;
    for (const s of this.slots) {
      if (s.busy || s.session.disposed) continue;
      const held = s.session.tokens;
      let common = 0;
      while (common < held.length && common < prompt.length && held[common] === prompt[common]) common++;
      if (common > bestCommon) {
        best = s;
        bestCommon = common;
      }
    }
    return best;
  }
}
