import type { RouteSpec } from '../route.js';
import { adminListRoutes } from './admin-lists.routes.js';
import { adminUserRoutes } from './admin-users.routes.js';
import { creditRoutes } from './credits.routes.js';
import { jobRoutes } from './jobs.routes.js';
import { modelGroupRoutes } from './model-groups.routes.js';
import { modelPriceRoutes } from './model-prices.routes.js';
import { openAiRoutes } from './openai.routes.js';
import { operationRoutes } from './operations.routes.js';
import { organizationRoutes } from './organizations.routes.js';
import { queueRoutes } from './queue.routes.js';
import { reportRoutes } from './reports.routes.js';
import { stripeRoutes } from './stripe.routes.js';
import { teamRoutes } from './teams.routes.js';
import { usageRoutes } from './usage.routes.js';
import { webhookRoutes } from './webhooks.routes.js';

export const allRoutes: RouteSpec[] = [
  ...operationRoutes,
  ...adminUserRoutes,
  ...organizationRoutes,
  ...modelGroupRoutes,
  ...teamRoutes,
  ...creditRoutes,
  ...stripeRoutes,
  ...jobRoutes,
  ...usageRoutes,
  ...modelPriceRoutes,
  ...queueRoutes,
  ...openAiRoutes,
  ...webhookRoutes,
  // The operator console's lists, edits and reports.
  ...adminListRoutes,
  ...reportRoutes,
];
