import { hash, randomBytes } from 'node:crypto';

export const TEAM_KEY_PREFIX = 'sk-';

/** 192 random bits: guessing is hopeless, so a fast hash (SHA-256) is enough to store it safely. */
export function generateTeamKey(): string {
  return TEAM_KEY_PREFIX + randomBytes(24).toString('base64url');
}

/** Runs for every request (its credential): the one-shot hash costs a quarter of a Hash object's. */
export function hashSecret(secret: string): string {
  return hash('sha256', secret, 'hex');
}

/** Enough of the key for a person to recognise it in a list, far too little to use it. */
export function displayPrefix(key: string): string {
  return key.slice(0, TEAM_KEY_PREFIX.length + 8);
}

export function keyStatus(key: { revokedAt: Date | null; expiresAt: Date | null }, now = new Date()) {
  if (key.revokedAt) return 'revoked' as const;
  if (key.expiresAt && key.expiresAt <= now) return 'expired' as const;
  return 'active' as const;
}
