import { AppError } from '../../lib/errors.js';

/** The refusals of a team key that is itself valid, each with the code clients match on. */

/** A valid key of a suspended team: 403, so its owner knows to ask an admin instead of rotating the key. */
export const teamSuspended = () =>
  new AppError('forbidden', "this key's team is suspended; an admin can resume it", { reason: 'team_suspended' });
