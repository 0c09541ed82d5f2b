import type { NextFunction, Request, Response } from 'express';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

export interface HttpMetrics {
  registry: Registry;
  requests: Counter<'method' | 'route' | 'status'>;
  duration: Histogram<'method' | 'route'>;
}

/** One registry per app instance, so several apps in one process (tests) never share counters. */
export function createMetrics(): HttpMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'creditgate_' });
  return {
    registry,
    requests: new Counter({
      name: 'creditgate_http_requests_total',
      help: 'HTTP requests by route template and status',
      labelNames: ['method', 'route', 'status'],
      registers: [registry],
    }),
    duration: new Histogram({
      name: 'creditgate_http_request_duration_seconds',
      help: 'time to the end of the response (streams included)',
      labelNames: ['method', 'route'],
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120],
      registers: [registry],
    }),
  };
}

/** Logs and counts every request when its response ends; the route label is the template, never the raw URL. */
export function observeRequests(metrics: HttpMetrics) {
  return (req: Request, res: Response, next: NextFunction) => {
    const started = process.hrtime.bigint();
    res.on('close', () => {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      const route = (res.locals.route as string | undefined) ?? 'unmatched';
      metrics.requests.inc({ method: req.method, route, status: String(res.statusCode) });
      metrics.duration.observe({ method: req.method, route }, seconds);
      req.log.info(
        { method: req.method, route, status: res.statusCode, ms: Math.round(seconds * 1000), aborted: !res.writableFinished },
        'request',
      );
    });
    next();
  };
}

/** What the domain's services hold, read when Prometheus scrapes. */
export function observeServices(
  registry: Registry,
  services: { claims: () => number; callsInFlight: () => number; queueKeptBytes: () => number },
): void {
  new Counter({
    name: 'creditgate_rate_limit_claims_total',
    help: 'claims of rate limit allowance from the shared per-minute windows (database round trips; a small share of the calls)',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(services.claims());
    },
  });
  new Gauge({
    name: 'creditgate_calls_in_flight',
    help: 'model calls this instance runs now (from their reservation until their record is written)',
    registers: [registry],
    collect() {
      this.set(services.callsInFlight());
    },
  });
  new Gauge({
    name: 'creditgate_queue_kept_bytes',
    help: 'bytes of replay frames queued calls keep for readers attaching late',
    registers: [registry],
    collect() {
      this.set(services.queueKeptBytes());
    },
  });
}
