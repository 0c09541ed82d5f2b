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

  const badValues: [string, string][] = [
    ['PORT', 'abc'],
    ['PORT', '70000'],
    ['PORT', '80.5'],
    ['DATABASE_URL', 'mysql://x'],
    ['DATABASE_URL', 'not a url'],
    ['LLM_BASE_URL', 'not a url'],
    ['LLM_BASE_URL', 'ftp://llm.example'],
    ['MASTER_KEY', 'short'],
    ['JWT_SECRET', 'x'.repeat(31)],
    ['LOG_LEVEL', 'loud'],
    ['DB_POOL_MAX', '0'],
    ['JWT_TTL_SECONDS', '10'],
    ['BODY_LIMIT', 'lots'],
  ];

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
