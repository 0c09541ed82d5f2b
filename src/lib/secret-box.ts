import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';

const VERSION = 'v1';

/**
 * Secrets creditgate must read back but the database alone must not reveal: webhook signing secrets (a dump must
 * not be enough to forge webhooks to the operator's receivers) and answers kept for an Idempotency-Key replay that
 * hold a new virtual key or signing secret. Kept encrypted (AES-256-GCM) with a key derived from the instance's own
 * secret (the admin token key: JWT_SECRET, MASTER_KEY or the file under DATA_DIR), never stored. The derivation's
 * label names webhooks because they were its first use; changing it would make every sealed secret unreadable.
 */
export class SecretBox {
  private readonly key: Buffer;

  constructor(rootSecret: Uint8Array) {
    this.key = Buffer.from(hkdfSync('sha256', rootSecret, 'creditgate', 'webhook-secrets-v1', 32));
  }

  seal(plain: string): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.key, iv);
    const sealed = Buffer.concat([cipher.update(plain, 'utf8'), cipher.final()]);
    return [VERSION, iv.toString('base64'), cipher.getAuthTag().toString('base64'), sealed.toString('base64')].join(':');
  }

  /** Undefined when it was sealed with another key (the instance secret changed). */
  open(sealed: string): string | undefined {
    const [version, iv, tag, data] = sealed.split(':');
    if (version !== VERSION || !iv || !tag || !data) return undefined;
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.key, Buffer.from(iv, 'base64'));
      decipher.setAuthTag(Buffer.from(tag, 'base64'));
      return Buffer.concat([decipher.update(Buffer.from(data, 'base64')), decipher.final()]).toString('utf8');
    } catch {
      return undefined;
    }
  }
}
