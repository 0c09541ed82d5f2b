import { AdminClient, AuthenticationError, CreditgateError } from '@creditgate/client';
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';

/**
 * The session: the admin credential (a JWT from a login, or the master key) lives in sessionStorage, so it ends
 * with the tab and is never in localStorage, a cookie or a URL. Every call goes through the typed AdminClient.
 */
const TOKEN_KEY = 'creditgate.console.token';
const listeners = new Set<() => void>();

export function currentToken(): string | null {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function signIn(token: string): void {
  sessionStorage.setItem(TOKEN_KEY, token);
  listeners.forEach((listener) => listener());
}

export function signOut(): void {
  sessionStorage.removeItem(TOKEN_KEY);
  listeners.forEach((listener) => listener());
}

export function useToken(): string | null {
  const [token, setToken] = useState(currentToken());
  useEffect(() => {
    const update = () => setToken(currentToken());
    listeners.add(update);
    return () => void listeners.delete(update);
  }, []);
  return token;
}

const baseUrl = () => window.location.origin;

/** An AdminClient with the session's credential; no retries beyond the client's own safe ones. */
export function admin(): AdminClient {
  return new AdminClient({ baseUrl: baseUrl(), apiKey: currentToken() ?? '', maxRetries: 2 });
}

/** A client without credential, for the login and first-run calls. */
export function anonymous(): AdminClient {
  return new AdminClient({ baseUrl: baseUrl(), maxRetries: 1 });
}

export function messageOf(error: unknown): string {
  if (error instanceof CreditgateError) return error.message;
  return error instanceof Error ? error.message : String(error);
}

/** A credential that stopped working (expired JWT, rotated key) ends the session. */
function handleAuth(error: unknown): void {
  if (error instanceof AuthenticationError) signOut();
}

export interface Data<T> {
  data: T | undefined;
  error: string | undefined;
  loading: boolean;
  reload: () => void;
}

/** Loads `load()` when `key` changes (and on reload); a late answer to an older key is dropped. */
export function useData<T>(load: () => Promise<T>, key: unknown[]): Data<T> {
  const [state, setState] = useState<{ data?: T; error?: string; loading: boolean }>({ loading: true });
  const [round, setRound] = useState(0);
  const latest = useRef(0);
  useEffect(() => {
    const ticket = ++latest.current;
    setState((previous) => ({ ...previous, loading: true }));
    load().then(
      (data) => ticket === latest.current && setState({ data, loading: false }),
      (error: unknown) => {
        handleAuth(error);
        if (ticket === latest.current) setState({ error: messageOf(error), loading: false });
      },
    );
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [...key, round]);
  const reload = useCallback(() => setRound((value) => value + 1), []);
  return { data: state.data, error: state.error, loading: state.loading, reload };
}

/** Runs an action once at a time, with its error kept for the form to show. */
export function useAction<A extends unknown[], T>(action: (...args: A) => Promise<T>) {
  const [pending, setPending] = useState(false);
  const [error, setError] = useState<string | undefined>();
  const running = useRef(false);
  const run = useCallback(
    async (...args: A): Promise<T | undefined> => {
      if (running.current) return undefined;
      running.current = true;
      setPending(true);
      setError(undefined);
      try {
        return await action(...args);
      } catch (caught) {
        handleAuth(caught);
        setError(messageOf(caught));
        return undefined;
      } finally {
        running.current = false;
        setPending(false);
      }
    },
    [action],
  );
  return { run, pending, error, setError };
}

/** A fresh Idempotency-Key: one per intended submission of a form, reused by every send of that submission. */
export function newIdempotencyKey(): string {
  return `console-${crypto.randomUUID()}`;
}

const credits = new Intl.NumberFormat('en-US', { maximumFractionDigits: 6 });
const usd = new Intl.NumberFormat('en-US', { style: 'currency', currency: 'USD', minimumFractionDigits: 2, maximumFractionDigits: 4 });
const whole = new Intl.NumberFormat('en-US');
const percent = new Intl.NumberFormat('en-US', { style: 'percent', maximumFractionDigits: 1 });

export const fmt = {
  credits: (value: number) => credits.format(value),
  // Small amounts keep two significant digits instead of showing as $0.00.
  usd: (value: number) => (value !== 0 && Math.abs(value) < 0.01 ? `$${value.toPrecision(2)}` : usd.format(value)),
  int: (value: number) => whole.format(value),
  pct: (value: number | null) => (value === null ? '—' : percent.format(value)),
  ms: (value: number | null) => (value === null ? '—' : `${whole.format(value)} ms`),
  date: (value: string | null) => (value ? new Date(value).toISOString().replace('T', ' ').slice(0, 19) + ' UTC' : '—'),
  day: (value: string) => value.slice(0, 10),
};

export const isoDaysAgo = (days: number) => new Date(Date.now() - days * 86_400_000).toISOString();

/** A datetime-local input's value (UTC) as ISO, or undefined when empty. */
export const localToIso = (value: string) => (value ? new Date(`${value}:00Z`).toISOString() : undefined);
