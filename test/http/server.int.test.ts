import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../helpers/app.js';

let app: TestApp;
beforeAll(async () => {
  app = await createTestApp();
});
afterAll(() => app.close());

describe('requests Node refuses before express', () => {
  it('answers oversized headers with 431 in the contract error shape', async () => {
    const response = await fetch(`${app.url}/api/organizations?cursor=${'x'.repeat(20_000)}`, { headers: { authorization: 'Bearer x' } });
    expect(response.status).toBe(431);
    expect(response.headers.get('content-type')).toBe('application/json');
    expect(((await response.json()) as { error: unknown }).error).toMatchObject({ type: 'invalid_request_error', code: 'headers_too_large' });
  });
});

describe('input PostgreSQL cannot store', () => {
  it('refuses a NUL character in the query string with 400', async () => {
    const response = await app.request('GET', '/api/organizations?cursor=%00');
    expect(response.status).toBe(400);
    expect(response.body.error).toMatchObject({ type: 'invalid_request_error', code: 'invalid_string', param: 'cursor' });
  });
});
