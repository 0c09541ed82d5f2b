import { z } from 'zod';
import { Timestamp } from './common.js';

const Email = z
  .email()
  .max(254)
  .transform((email) => email.toLowerCase());

export const CreateAdminUserRequest = z
  .strictObject({ email: Email, password: z.string().min(12).max(512) })
  .meta({ id: 'CreateAdminUserRequest', example: { email: 'ops@acme.test', password: 'a long passphrase' } });
export type CreateAdminUserRequest = z.infer<typeof CreateAdminUserRequest>;

export const LoginRequest = z.strictObject({ email: Email, password: z.string().min(1).max(512) }).meta({ id: 'LoginRequest', example: { email: 'ops@acme.test', password: 'a long passphrase' } });
export type LoginRequest = z.infer<typeof LoginRequest>;

export const LoginResponse = z
  .object({ access_token: z.string(), token_type: z.literal('Bearer'), expires_in: z.number().int() })
  .meta({ id: 'LoginResponse' });
export type LoginResponse = z.infer<typeof LoginResponse>;

export const AdminUser = z
  .object({ admin_user_id: z.string(), email: z.string(), created_at: Timestamp, last_login_at: Timestamp.nullable() })
  .meta({ id: 'AdminUser' });
export type AdminUser = z.infer<typeof AdminUser>;

export const AdminIdentity = z
  .object({
    kind: z.enum(['master_key', 'admin_user']),
    admin_user: AdminUser.nullable(),
  })
  .meta({ id: 'AdminIdentity' });
export type AdminIdentity = z.infer<typeof AdminIdentity>;
