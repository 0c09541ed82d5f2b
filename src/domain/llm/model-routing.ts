import { AppError } from '../../lib/errors.js';
import type { TeamSnapshot } from '../tenancy/team-snapshot.js';

export interface ModelRoute {
  /** What the caller asked for (or the default group's name). */
  requested: string;
  /** Upstream model names to try in order; the next one is tried only if one fails before its first byte. */
  candidates: string[];
}

/**
 * `model` may name one of the team's model groups (its models in priority order) or a model inside one of
 * them (just that model); omitted, the team's first group is used. Anything else is refused.
 */
export function resolveModelRoute(snapshot: TeamSnapshot, model: string | undefined): ModelRoute {
  const { groups, models } = snapshot;
  if (groups.length === 0) {
    throw new AppError('forbidden', 'this team has no model groups; an admin must assign one', { reason: 'no_model_access', param: 'model' });
  }
  const requested = model ?? groups[0]!;
  const group = models.get(requested);
  if (group && group.length > 0) return { requested, candidates: group.map((m) => m.model_name) };
  for (const name of groups) {
    if (models.get(name)?.some((m) => m.model_name === requested)) return { requested, candidates: [requested] };
  }
  throw new AppError('forbidden', `model ${requested} is not available to this team`, { reason: 'model_not_allowed', param: 'model' });
}
