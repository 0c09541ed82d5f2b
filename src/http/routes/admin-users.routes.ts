import { AdminIdentity, AdminUser, CreateAdminUserRequest, LoginRequest, LoginResponse } from '../../contracts/index.js';
import { createAdminUser, getAdminIdentity, login } from '../../domain/admin/admin-users.service.js';
import { defineRoute } from '../route.js';

const tags = ['Admin users'];

export const adminUserRoutes = [
  defineRoute({
    method: 'post',
    path: '/api/admin-users/create',
    auth: 'admin',
    summary: 'Create an admin user (the first one with the master key)',
    tags,
    body: CreateAdminUserRequest,
    response: { status: 201, schema: AdminUser, description: 'the admin user' },
    errors: [409],
    handler: ({ ctx, body }) => createAdminUser(ctx, body),
  }),
  defineRoute({
    method: 'post',
    path: '/api/admin-users/login',
    auth: 'public',
    summary: 'Exchange an email and password for an admin JWT',
    tags,
    body: LoginRequest,
    response: { schema: LoginResponse, description: 'a bearer token usable wherever the master key is' },
    errors: [401, 429],
    // The socket's address, not X-Forwarded-For: the app does not trust proxies, and a header is the client's to forge.
    handler: ({ ctx, deps, body, req }) => login(ctx, deps.adminAuth, body, req.socket.remoteAddress),
  }),
  defineRoute({
    method: 'get',
    path: '/api/admin-users/me',
    auth: 'admin',
    summary: 'Who the admin credential belongs to',
    tags,
    response: { schema: AdminIdentity, description: 'the master key or the admin user' },
    handler: ({ ctx }) => getAdminIdentity(ctx),
  }),
];
