import type { NextFunction, Request, Response } from 'express';
import { validationFailed } from '../../lib/errors.js';

const MAX_DEPTH = 64;

/**
 * Refuses input (the JSON body and the query string) that PostgreSQL cannot store or that would exhaust the stack
 * later on: NUL characters and lone UTF-16 surrogates in any string or key (text and jsonb reject them), and
 * nesting deeper than 64 levels.
 * Walked iteratively, so a hostile body cannot overflow the stack here either.
 */
export function storableJson(req: Request, _res: Response, next: NextFunction): void {
  for (const [part, value] of [
    // A raw body (bytes a signature covers, see RouteSpec.rawBody) is not JSON; its handler reads it.
    ['request body', Buffer.isBuffer(req.body) ? undefined : req.body],
    ['query string', req.query],
  ] as const) {
    const problem = findProblem(value);
    if (problem) return next(validationFailed(`${part} ${problem.message}`, problem.path || undefined, problem.reason));
  }
  next();
}

function badString(value: string): string | undefined {
  if (value.includes('\u0000')) return 'contains a NUL character';
  if (!value.isWellFormed()) return 'contains an unpaired UTF-16 surrogate';
  return undefined;
}

function findProblem(body: unknown): { message: string; path: string; reason: string } | undefined {
  const stack: { value: unknown; path: string; depth: number }[] = [{ value: body, path: '', depth: 0 }];
  while (stack.length > 0) {
    const { value, path, depth } = stack.pop()!;
    if (typeof value === 'string') {
      const bad = badString(value);
      if (bad) return { message: `${path ? `field ${path} ` : ''}${bad}`, path, reason: 'invalid_string' };
      continue;
    }
    if (value === null || typeof value !== 'object') continue;
    if (depth >= MAX_DEPTH) return { message: `is nested deeper than ${MAX_DEPTH} levels`, path, reason: 'too_deep' };
    for (const [key, child] of Object.entries(value)) {
      const childPath = path ? `${path}.${key}` : key;
      const bad = badString(key);
      if (bad) return { message: `key ${JSON.stringify(key.slice(0, 40))} ${bad}`, path: childPath, reason: 'invalid_string' };
      stack.push({ value: child, path: childPath, depth: depth + 1 });
    }
  }
  return undefined;
}
