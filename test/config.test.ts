import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/config.js';

/** The ConfigError thrown for `env`; fails the test when loading succeeds or throws something else. */
function configError(env: Record<string, string>): ConfigError {
  try {
    loadConfig(env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error(`loadConfig(${JSON.stringify(env)}) did not throw`);
}

describe('loadConfig', () => {
  it('applies the defaults to an empty environment', () => {
    const config = loadConfig({});
    expect(config).toMatchObject({
      PORT: 8003,
      HOST: '0.0.0.0',
      DATA_DIR: './.data',
      JWT_TTL_SECONDS: 3600,
      LOG_LEVEL: 'info',
      BODY_LIMIT: '1mb',
      DB_POOL_MAX: 20,
      IDEMPOTENCY_TTL_HOURS: 24,
      SHUTDOWN_GRACE_MS: 10_000,
    });
    expect(config.DATABASE_URL).toBeUndefined();
    expect(config.LLM_BASE_URL).toBeUndefined();
    expect(config.LLM_API_KEY).toBeUndefined();
    expect(config.MASTER_KEY).toBeUndefined();
    expect(config.JWT_SECRET).toBeUndefined();
    expect(Object.isFrozen(config)).toBe(true);
  });

  it('treats empty or blank optional values as unset', () => {
    const config = loadConfig({ DATABASE_URL: '', LLM_BASE_URL: '   ', LLM_API_KEY: '', MASTER_KEY: '', JWT_SECRET: ' ' });
    expect(config.DATABASE_URL).toBeUndefined();
    expect(config.LLM_BASE_URL).toBeUndefined();
    expect(config.LLM_API_KEY).toBeUndefined();
    expect(config.MASTER_KEY).toBeUndefined();
    expect(config.JWT_SECRET).toBeUndefined();
  });

  it('coerces numeric variables and keeps valid values', () => {
    const config = loadConfig({
      PORT: '9000',
      DB_POOL_MAX: '5',
      JWT_TTL_SECONDS: '120',
      IDEMPOTENCY_TTL_HOURS: '48',
      SHUTDOWN_GRACE_MS: '2500',
      DATABASE_URL: 'postgres://user:pw@db.example:5432/creditgate',
      LLM_BASE_URL: 'https://llm.example/v1',
      MASTER_KEY: 'mk-0123456789abcdef',
      JWT_SECRET: 'j'.repeat(32),
      LOG_LEVEL: 'debug',
      DATA_DIR: '/var/lib/creditgate',
    });
    expect(config).toMatchObject({
      PORT: 9000,
      DB_POOL_MAX: 5,
      JWT_TTL_SECONDS: 120,
      IDEMPOTENCY_TTL_HOURS: 48,
      SHUTDOWN_GRACE_MS: 2500,
      DATABASE_URL: 'postgres://user:pw@db.example:5432/creditgate',
      LLM_BASE_URL: 'https://llm.example/v1',
      MASTER_KEY: 'mk-0123456789abcdef',
      JWT_SECRET: 'j'.repeat(32),
      LOG_LEVEL: 'debug',
      DATA_DIR: '/var/lib/creditgate',
    });
    expect(typeof config.PORT).toBe('number');
    expect(loadConfig({ DATABASE_URL: 'postgresql://localhost/x' }).DATABASE_URL).toBe('postgresql://localhost/x');
    expect(loadConfig({ LLM_BASE_URL: 'http://127.0.0.1:4000' }).LLM_BASE_URL).toBe('http://127.0.0.1:4000');
    expect(loadConfig({ PORT: '0' }).PORT).toBe(0);
  });

  it('reads the Stripe settings: a price → credits mapping, a currency, the API address', () => {
    expect(loadConfig({})).toMatchObject({ STRIPE_PRICE_CREDITS: {}, STRIPE_CURRENCY: 'usd', STRIPE_API_URL: 'https://api.stripe.com' });
    const config = loadConfig({ STRIPE_PRICE_CREDITS: ' {"price_small": 100, "price_large": 1000} ', STRIPE_CURRENCY: ' EUR ', STRIPE_API_URL: 'http://127.0.0.1:12111' });
    expect(config).toMatchObject({ STRIPE_PRICE_CREDITS: { price_small: 100, price_large: 1000 }, STRIPE_CURRENCY: 'eur', STRIPE_API_URL: 'http://127.0.0.1:12111' });
    expect(loadConfig({ STRIPE_WEBHOOK_SECRET: '', STRIPE_SECRET_KEY: ' ' })).toMatchObject({ STRIPE_WEBHOOK_SECRET: undefined, STRIPE_SECRET_KEY: undefined });
  });

  const badValues: [string, string][] = [
    ['PORT', 'abc'],
    ['PORT', '70000'],
    ['PORT', '80.5'],
    ['DATABASE_URL', 'mysql://x'],
    ['DATABASE_URL', 'not a url'],
    ['DATABASE_DIRECT_URL', 'mysql://x'],
    ['DB_PREPARED_STATEMENTS', 'maybe'],
    ['LLM_BASE_URL', 'not a url'],
    ['LLM_BASE_URL', 'ftp://llm.example'],
    ['MASTER_KEY', 'short'],
    ['JWT_SECRET', 'x'.repeat(31)],
    ['LOG_LEVEL', 'loud'],
    ['DB_POOL_MAX', '0'],
    ['JWT_TTL_SECONDS', '10'],
    ['BODY_LIMIT', 'lots'],
    ['STRIPE_PRICE_CREDITS', 'price_a=100'],
    ['STRIPE_PRICE_CREDITS', '[100]'],
    ['STRIPE_PRICE_CREDITS', '{"price_a": 0}'],
    ['STRIPE_PRICE_CREDITS', '{"price_a": "100"}'],
    ['STRIPE_CURRENCY', 'dollars'],
    ['STRIPE_API_URL', 'ftp://stripe.example'],
    ['STRIPE_API_URL', 'https://proxy.example/stripe'],
  ];

  it('keeps prepared statements on and the direct connection on DATABASE_URL unless told otherwise', () => {
    const defaults = loadConfig({});
    expect(defaults.DB_PREPARED_STATEMENTS).toBe(true);
    expect(defaults.DATABASE_DIRECT_URL).toBeUndefined();
    const pooled = loadConfig({
      DATABASE_URL: 'postgres://cg@pgbouncer:6432/creditgate',
      DATABASE_DIRECT_URL: 'postgres://cg@db:5432/creditgate',
      DB_PREPARED_STATEMENTS: 'false',
    });
    expect(pooled).toMatchObject({ DATABASE_DIRECT_URL: 'postgres://cg@db:5432/creditgate', DB_PREPARED_STATEMENTS: false });
    expect(loadConfig({ DB_PREPARED_STATEMENTS: '0' }).DB_PREPARED_STATEMENTS).toBe(false);
    expect(loadConfig({ DB_PREPARED_STATEMENTS: 'true' }).DB_PREPARED_STATEMENTS).toBe(true);
    // Without DATABASE_URL the embedded PostgreSQL is used, so a direct URL would point at another database.
    expect(configError({ DATABASE_DIRECT_URL: 'postgres://cg@db:5432/creditgate' }).message).toMatch(/DATABASE_DIRECT_URL: needs DATABASE_URL/);
  });

  it.each(badValues)('rejects %s=%s with a one-line ConfigError naming the variable', (name, value) => {
    const error = configError({ [name]: value });
    expect(error.message).not.toMatch(/[\r\n]/);
    expect(error.message).toMatch(new RegExp(`\\b${name}\\b`));
    // Only the bad variable is blamed.
    const named = badValues.map(([variable]) => variable).filter((variable) => variable !== name && error.message.includes(variable));
    expect(named).toEqual([]);
  });

  it('does not echo secret values in the error', () => {
    expect(configError({ MASTER_KEY: 'tiny-secret' }).message).not.toContain('tiny-secret');
    expect(configError({ JWT_SECRET: 'almost-long-enough-secret' }).message).not.toContain('almost-long-enough-secret');
  });

  it('reports every bad variable on the same single line', () => {
    const error = configError({ PORT: 'abc', LOG_LEVEL: 'loud', MASTER_KEY: 'short' });
    expect(error.message).not.toMatch(/[\r\n]/);
    for (const name of ['PORT', 'LOG_LEVEL', 'MASTER_KEY']) expect(error.message).toContain(name);
  });
});
