import type { BalanceAlerts, BalanceAlertsInput } from '../../contracts/index.js';

/** A team's balance alert settings, as its row keeps them. */
export interface BalanceAlertSettings {
  lowBalanceThreshold: number | null;
  lowBalancePercent: number | null;
  autoRefillBelow: number | null;
  autoRefillCredits: number | null;
}

export function presentBalanceAlerts(team: BalanceAlertSettings): BalanceAlerts {
  return {
    low_balance_credits: team.lowBalanceThreshold,
    low_balance_percent: team.lowBalancePercent,
    auto_refill: team.autoRefillBelow === null || team.autoRefillCredits === null ? null : { below_credits: team.autoRefillBelow, refill_credits: team.autoRefillCredits },
  };
}

/** The columns an update changes: what is given (null clears it), nothing for what is omitted. */
export function changedBalanceAlerts(input: BalanceAlertsInput | undefined): Partial<BalanceAlertSettings> {
  if (!input) return {};
  return {
    ...(input.low_balance_credits !== undefined && { lowBalanceThreshold: input.low_balance_credits }),
    ...(input.low_balance_percent !== undefined && { lowBalancePercent: input.low_balance_percent }),
    ...(input.auto_refill !== undefined && {
      autoRefillBelow: input.auto_refill?.below_credits ?? null,
      autoRefillCredits: input.auto_refill?.refill_credits ?? null,
    }),
  };
}
