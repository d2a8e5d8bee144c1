// The HTTP side of a watch: headers flushed at once (client-node's informer waits for them),
// one JSON event per line, a bare "\n" heartbeat so idle clients do not time out, bookmarks only
// when asked for, timeoutSeconds honoured, and the stream ended after an in-stream ERROR.

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { WatchEventType, WatchHub, WatchSpec } from './watch-hub.js';

export interface WatchStreamOptions {
  spec: WatchSpec;
  hub: WatchHub;
  heartbeatMs: number;
  /** Bookmark cadence when allowWatchBookmarks=true. */
  bookmarkMs?: number;
  timeoutSeconds?: number;
  /** Turns each event's object into what is sent (a one-row Table for Table watches). */
  render: (type: WatchEventType, obj: Record<string, unknown>, first: boolean) => Record<string, unknown>;
  /** When set: JSON.stringify(render(...)) without building the rendered object (e.g. stored text). */
  renderJson?: (type: WatchEventType, obj: Record<string, unknown>, first: boolean) => string;
  /** Registry of open watches, so server close can end them. */
  open: Set<() => void>;
  /**
   * Set when `render` depends only on the event type, the object and this key (not on the watch):
   * then every watch with the same key sends the same text for one stored event, serialised once.
   */
  shareKey?: string;
}

/** Event lines already serialised, per stored object (live events hand every watch the same object). */
const sharedLines = new WeakMap<Record<string, unknown>, Map<string, string>>();

export function serveWatch(req: IncomingMessage, res: ServerResponse, o: WatchStreamOptions): void {
  res.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-cache, private', 'Transfer-Encoding': 'chunked' });
  res.flushHeaders();
  let ended = false;
  let first = true;
  const timers: NodeJS.Timeout[] = [];
  const finish = (): void => {
    if (ended) return;
    ended = true;
    handle?.stop();
    for (const t of timers) clearInterval(t);
    o.open.delete(finish);
    res.end();
  };
  const write = (type: WatchEventType, obj: Record<string, unknown>): void => {
    if (ended) return;
    if (type === 'ERROR' || type === 'BOOKMARK') {
      res.write(`${JSON.stringify({ type, object: obj })}\n`);
      return;
    }
    const key = o.shareKey === undefined ? undefined : `${type} ${o.shareKey}`;
    let lines = key === undefined ? undefined : sharedLines.get(obj);
    let line = key === undefined ? undefined : lines?.get(key);
    if (line === undefined) {
      line = o.renderJson ? `{"type":"${type}","object":${o.renderJson(type, obj, first)}}\n` : `${JSON.stringify({ type, object: o.render(type, obj, first) })}\n`;
      if (key !== undefined) {
        if (!lines) sharedLines.set(obj, (lines = new Map()));
        lines.set(key, line);
      }
    }
    first = false;
    res.write(line);
  };
  o.open.add(finish);
  req.on('close', finish);
  res.on('error', finish);
  let handle: { stop(): void } | undefined;
  handle = o.hub.watch(o.spec, { event: write, end: () => setImmediate(finish) });
  if (ended) {
    handle.stop();
    return;
  }
  timers.push(setInterval(() => !ended && res.write('\n'), o.heartbeatMs));
  if (o.spec.allowBookmarks) timers.push(setInterval(() => write('BOOKMARK', o.hub.bookmark(o.spec.def)), o.bookmarkMs ?? 60_000));
  // Without timeoutSeconds the real server closes after a random 30-60 minutes.
  const timeoutMs = o.timeoutSeconds !== undefined && o.timeoutSeconds > 0 ? o.timeoutSeconds * 1000 : (1800 + Math.random() * 1800) * 1000;
  const t = setTimeout(finish, timeoutMs);
  timers.push(t);
}
