export * from './admin-users.js';
export * from './api-keys.js';
export * from './common.js';
export * from './credits.js';
export * from './model-groups.js';
export * from './organizations.js';
export * from './teams.js';
