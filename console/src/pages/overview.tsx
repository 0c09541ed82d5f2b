import type { Breakdown, WindowTotals } from '@creditgate/client';
import { useMemo, useState } from 'preact/hooks';
import { admin, fmt, isoDaysAgo, useData } from '../api';
import { ErrorNote, LineChart, Loading, Page, Section, Stat } from '../components';

const WINDOWS = [
  ['today', 'Today'],
  ['last_7_days', 'Last 7 days'],
  ['last_30_days', 'Last 30 days'],
] as const;

export function Overview() {
  const [granularity, setGranularity] = useState<'day' | 'hour'>('day');
  const overview = useData(() => admin().reports.overview(), []);
  const series = useData(
    () => admin().reports.timeseries({ granularity, from: isoDaysAgo(granularity === 'day' ? 29 : 2) }),
    [granularity],
  );
  const byTeam = useData(() => admin().reports.breakdown({ by: 'team', sort: 'credits_charged', limit: 10 }), []);
  const byModel = useData(() => admin().reports.breakdown({ by: 'model', sort: 'cost_usd', limit: 20 }), []);
  const byType = useData(() => admin().reports.breakdown({ by: 'job_type', sort: 'calls', limit: 20 }), []);
  const low = useData(() => admin().reports.lowCredits({ threshold: 10, limit: 10 }), []);

  const chart = useMemo(() => {
    const points = series.data?.points ?? [];
    return {
      x: points.map((point) => Date.parse(point.bucket) / 1000),
      money: [
        { label: 'Revenue (USD)', values: points.map((point) => point.revenue_usd), color: '#2563eb' },
        { label: 'Upstream cost (USD)', values: points.map((point) => point.cost_usd), color: '#dc2626' },
      ],
      calls: [
        { label: 'Calls', values: points.map((point) => point.calls), color: '#0f766e' },
        { label: 'Failed calls', values: points.map((point) => point.failed_calls), color: '#b45309' },
        { label: 'p95 latency (ms)', values: points.map((point) => point.latency_p95_ms), color: '#7c3aed', right: true },
      ],
    };
  }, [series.data]);

  const refresh = () => [overview, series, byTeam, byModel, byType, low].forEach((data) => data.reload());
  return (
    <Page
      title="Overview"
      actions={
        <button type="button" onClick={refresh}>
          Refresh
        </button>
      }
    >
      <ErrorNote error={overview.error} />
      {!overview.data ? (
        <Loading what="the overview" />
      ) : (
        <>
          <div class="stats" aria-label="Credits now">
            <Stat label="Credits outstanding" value={fmt.credits(overview.data.credits.outstanding)} hint={`${overview.data.credits.teams} teams`} />
            <Stat label="Credits held" value={fmt.credits(overview.data.credits.held)} hint="by open jobs" />
            <Stat label="Credits available" value={fmt.credits(overview.data.credits.available)} />
            <Stat label="Teams low on credits" value={fmt.int(overview.data.credits.low_credit_teams)} hint={`under ${overview.data.credits.low_credits_threshold} available`} />
          </div>
          <Section title="Usage and margin">
            <div class="table-wrap">
              <table>
                <caption class="sr-only">Usage, cost and margin by window; a credit sells for ${overview.data.credit_price_usd}</caption>
                <thead>
                  <tr>
                    <th scope="col">Window</th>
                    <th scope="col">Credits charged</th>
                    <th scope="col">Revenue</th>
                    <th scope="col">Upstream cost</th>
                    <th scope="col">Margin</th>
                    <th scope="col">Jobs</th>
                    <th scope="col">Calls</th>
                    <th scope="col">Tokens</th>
                    <th scope="col">Error rate</th>
                    <th scope="col">Latency p50 / p95</th>
                    <th scope="col">TTFT p50 / p95</th>
                  </tr>
                </thead>
                <tbody>
                  {WINDOWS.map(([key, label]) => (
                    <WindowRow key={key} label={label} totals={overview.data!.windows[key]} />
                  ))}
                </tbody>
              </table>
            </div>
            <p class="muted">Revenue is credits charged at ${overview.data.credit_price_usd} per credit (CREDIT_PRICE_USD).</p>
          </Section>
        </>
      )}
      <Section title="Over time">
        <div class="row">
          <label>
            Resolution{' '}
            <select value={granularity} onChange={(event) => setGranularity(event.currentTarget.value as 'day' | 'hour')}>
              <option value="day">By day, 30 days</option>
              <option value="hour">By hour, 3 days</option>
            </select>
          </label>
        </div>
        <ErrorNote error={series.error} />
        {series.data && (
          <div class="charts">
            <LineChart title="Revenue and upstream cost" x={chart.x} series={chart.money} leftLabel="USD" />
            <LineChart title="Calls, failures and p95 latency" x={chart.x} series={chart.calls} leftLabel="calls" rightLabel="ms" />
          </div>
        )}
      </Section>
      <div class="grid-2">
        <Section title="Top teams by spend (30 days)">
          <BreakdownTable data={byTeam.data} error={byTeam.error} keyLabel="Team" link={(key) => `/console/teams/${encodeURIComponent(key)}`} />
        </Section>
        <Section title="Teams low on credits">
          <ErrorNote error={low.error} />
          {low.data && low.data.data.length === 0 && <p class="muted">No active team has less than {low.data.threshold} credits available.</p>}
          {low.data && low.data.data.length > 0 && (
            <table>
              <thead>
                <tr>
                  <th scope="col">Team</th>
                  <th scope="col">Available</th>
                  <th scope="col">Held</th>
                </tr>
              </thead>
              <tbody>
                {low.data.data.map((team) => (
                  <tr key={team.team_id}>
                    <td>
                      <a href={`/console/teams/${encodeURIComponent(team.team_id)}`}>{team.team_alias ?? team.team_id}</a>
                    </td>
                    <td>{fmt.credits(team.credits_remaining)}</td>
                    <td>{fmt.credits(team.held)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </Section>
      </div>
      <Section title="Margin by model (30 days)">
        <BreakdownTable data={byModel.data} error={byModel.error} keyLabel="Model" />
      </Section>
      <Section title="By job type (30 days)">
        <BreakdownTable data={byType.data} error={byType.error} keyLabel="Job type" />
      </Section>
    </Page>
  );
}

function WindowRow({ label, totals }: { label: string; totals: WindowTotals }) {
  return (
    <tr>
      <th scope="row">{label}</th>
      <td data-metric="credits_charged">{fmt.credits(totals.credits_charged)}</td>
      <td>{fmt.usd(totals.revenue_usd)}</td>
      <td>{fmt.usd(totals.cost_usd)}</td>
      <td>
        {fmt.usd(totals.margin_usd)} <span class="muted">({fmt.pct(totals.margin_pct)})</span>
      </td>
      <td data-metric="jobs">{fmt.int(totals.jobs)}</td>
      <td data-metric="calls">{fmt.int(totals.calls)}</td>
      <td>{fmt.int(totals.total_tokens)}</td>
      <td>{fmt.pct(totals.error_rate)}</td>
      <td>
        {fmt.ms(totals.latency_p50_ms)} / {fmt.ms(totals.latency_p95_ms)}
      </td>
      <td>
        {fmt.ms(totals.ttft_p50_ms)} / {fmt.ms(totals.ttft_p95_ms)}
      </td>
    </tr>
  );
}

export function BreakdownTable({ data, error, keyLabel, link }: { data: Breakdown | undefined; error: string | undefined; keyLabel: string; link?: (key: string) => string }) {
  if (error) return <ErrorNote error={error} />;
  if (!data) return <Loading what={keyLabel.toLowerCase()} />;
  if (data.rows.length === 0) return <p class="muted">Nothing in this period.</p>;
  return (
    <div class="table-wrap">
      <table>
        <thead>
          <tr>
            <th scope="col">{keyLabel}</th>
            <th scope="col">Credits</th>
            <th scope="col">Revenue</th>
            <th scope="col">Cost</th>
            <th scope="col">Margin</th>
            <th scope="col">Calls</th>
            <th scope="col">Errors</th>
            <th scope="col">Avg latency</th>
          </tr>
        </thead>
        <tbody>
          {data.rows.map((row) => (
            <tr key={row.key}>
              <th scope="row">{link ? <a href={link(row.key)}>{row.key}</a> : row.key || '—'}</th>
              <td>{fmt.credits(row.credits_charged)}</td>
              <td>{fmt.usd(row.revenue_usd)}</td>
              <td>{fmt.usd(row.cost_usd)}</td>
              <td>
                {fmt.usd(row.margin_usd)} <span class="muted">({fmt.pct(row.margin_pct)})</span>
              </td>
              <td>{fmt.int(row.calls)}</td>
              <td>{fmt.pct(row.error_rate)}</td>
              <td>{fmt.ms(row.avg_latency_ms)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
