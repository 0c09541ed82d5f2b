import type { JobStatus, LlmCallSummary } from '@creditgate/client';
import { useEffect, useState } from 'preact/hooks';
import { useLocation } from 'preact-iso';
import { admin, fmt, localToIso, useAction, useData } from '../api';
import { ConfirmButton, ErrorNote, Field, Loading, Page, Pager, Section, Stat, StatusBadge, usePager, valueOf } from '../components';

const STATUSES: JobStatus[] = ['pending', 'in_progress', 'completed', 'failed', 'cancelled', 'expired'];

export function Jobs() {
  const { query } = useLocation();
  const [teamId, setTeamId] = useState(query.team_id ?? '');
  const [status, setStatus] = useState('');
  const [jobType, setJobType] = useState('');
  const [from, setFrom] = useState('');
  const [to, setTo] = useState('');
  const [applied, setApplied] = useState({ teamId: query.team_id ?? '', jobType: '' });
  const pager = usePager();
  useEffect(() => pager.reset(), [applied, status, from, to]);
  const list = useData(
    () =>
      admin().jobs.list({
        limit: 25,
        cursor: pager.cursor,
        ...(applied.teamId && { team_id: applied.teamId }),
        ...(applied.jobType && { job_type: applied.jobType }),
        ...(status && { status: status as JobStatus }),
        ...(localToIso(from) && { from: localToIso(from) }),
        ...(localToIso(to) && { to: localToIso(to) }),
      }),
    [pager.cursor, applied, status, from, to],
  );
  return (
    <Page title="Jobs">
      <form
        class="filters"
        role="search"
        aria-label="Filter jobs"
        onSubmit={(event) => {
          event.preventDefault();
          setApplied({ teamId: teamId.trim(), jobType: jobType.trim() });
        }}
      >
        <Field label="Team id">
          <input value={teamId} onInput={(event) => setTeamId(valueOf(event))} />
        </Field>
        <Field label="Job status">
          <select value={status} onChange={(event) => setStatus(valueOf(event))}>
            <option value="">Any</option>
            {STATUSES.map((value) => (
              <option key={value} value={value}>
                {value}
              </option>
            ))}
          </select>
        </Field>
        <Field label="Job type">
          <input value={jobType} onInput={(event) => setJobType(valueOf(event))} />
        </Field>
        <Field label="Created from (UTC)">
          <input type="datetime-local" value={from} onInput={(event) => setFrom(valueOf(event))} />
        </Field>
        <Field label="Created before (UTC)">
          <input type="datetime-local" value={to} onInput={(event) => setTo(valueOf(event))} />
        </Field>
        <button type="submit">Filter</button>
      </form>
      <ErrorNote error={list.error} />
      {!list.data ? (
        !list.error && <Loading what="jobs" />
      ) : (
        <Section title="Newest first">
          <div class="table-wrap">
            <table aria-busy={list.loading}>
              <thead>
                <tr>
                  <th scope="col">Job</th>
                  <th scope="col">Team</th>
                  <th scope="col">Type</th>
                  <th scope="col">Status</th>
                  <th scope="col">Calls</th>
                  <th scope="col">Tokens</th>
                  <th scope="col">Cost</th>
                  <th scope="col">Credits</th>
                  <th scope="col">Created</th>
                </tr>
              </thead>
              <tbody>
                {list.data.data.map((job) => (
                  <tr key={job.job_id}>
                    <th scope="row" class="mono">
                      <a href={`/console/jobs/${job.job_id}`}>{job.job_id}</a>
                    </th>
                    <td>
                      <a href={`/console/teams/${encodeURIComponent(job.team_id)}`}>{job.team_id}</a>
                    </td>
                    <td>{job.job_type}</td>
                    <td>
                      <StatusBadge status={job.status} />
                    </td>
                    <td>{fmt.int(job.total_calls)}</td>
                    <td>{fmt.int(job.total_tokens)}</td>
                    <td>{fmt.usd(job.total_cost_usd)}</td>
                    <td>{fmt.credits(job.credits_charged || job.credits_reserved)}</td>
                    <td>{fmt.date(job.created_at)}</td>
                  </tr>
                ))}
                {list.data.data.length === 0 && (
                  <tr>
                    <td colSpan={9} class="muted">
                      No job matches.
                    </td>
                  </tr>
                )}
              </tbody>
            </table>
          </div>
          <Pager pager={pager} nextCursor={list.data.next_cursor} label="Jobs" />
        </Section>
      )}
    </Page>
  );
}

export function JobPage({ id }: { id: string }) {
  const job = useData(() => admin().jobs.get(id), [id]);
  const cancel = useAction(async () => {
    await admin().jobs.cancel(id);
    job.reload();
  });
  const open = job.data && (job.data.status === 'pending' || job.data.status === 'in_progress');
  return (
    <Page title={`Job ${id}`}>
      <ErrorNote error={job.error} />
      {!job.data ? (
        !job.error && <Loading what="the job" />
      ) : (
        <>
          <Section title="Job">
            <div class="stats">
              <Stat label="Status" value={<StatusBadge status={job.data.status} />} />
              <Stat label="Credits charged" value={fmt.credits(job.data.costs.credits_charged)} />
              <Stat label="Credits held" value={fmt.credits(job.data.credits_reserved)} />
              <Stat label="Calls" value={fmt.int(job.data.costs.total_calls)} />
              <Stat label="Tokens" value={fmt.int(job.data.costs.total_tokens)} />
              <Stat label="Upstream cost" value={fmt.usd(job.data.costs.total_cost_usd)} />
            </div>
            <dl class="details">
              <dt>Team</dt>
              <dd>
                <a href={`/console/teams/${encodeURIComponent(job.data.team_id)}`}>{job.data.team_id}</a>
              </dd>
              <dt>Type</dt>
              <dd>{job.data.job_type}</dd>
              <dt>User</dt>
              <dd>{job.data.user_id ?? '—'}</dd>
              <dt>Created</dt>
              <dd>{fmt.date(job.data.created_at)}</dd>
              <dt>Completed</dt>
              <dd>{fmt.date(job.data.completed_at)}</dd>
              <dt>Error</dt>
              <dd>{job.data.error_message ?? '—'}</dd>
              <dt>Metadata</dt>
              <dd>
                <pre class="text">{JSON.stringify(job.data.metadata, null, 2)}</pre>
              </dd>
            </dl>
            {open && (
              <ConfirmButton
                danger
                label="Cancel job"
                question="Cancel this job? Its calls in flight are aborted; it pays for what it delivered."
                confirm="Cancel job"
                onConfirm={() => void cancel.run()}
              />
            )}
            <ErrorNote error={cancel.error} />
          </Section>
          <Section title={`Calls (${job.data.calls.length}, in order)`}>
            {job.data.calls.length === 0 && <p class="muted">No call yet.</p>}
            <ol class="calls">
              {job.data.calls.map((call, index) => (
                <CallCard key={call.call_id} call={call} index={index} />
              ))}
            </ol>
          </Section>
        </>
      )}
    </Page>
  );
}

/** One call. Model output is shown as text only: Preact escapes it, and nothing is ever set as HTML. */
function CallCard({ call, index }: { call: LlmCallSummary; index: number }) {
  return (
    <li class="call" aria-label={`Call ${index + 1}`}>
      <div class="row">
        <strong>Call {index + 1}</strong>
        <StatusBadge status={call.status} />
        <span class="mono muted">{call.call_id}</span>
        {call.streamed && <span class="badge">streamed</span>}
      </div>
      <dl class="details">
        <dt>Model requested</dt>
        <dd class="mono">{call.model_requested}</dd>
        <dt>Model served</dt>
        <dd class="mono">{call.model_used ?? '—'}</dd>
        <dt>Tokens</dt>
        <dd>
          {fmt.int(call.prompt_tokens)} in + {fmt.int(call.completion_tokens)} out = {fmt.int(call.total_tokens)}
          {call.usage_source && <span class="muted"> ({call.usage_source})</span>}
        </dd>
        <dt>Cost</dt>
        <dd>{fmt.usd(call.cost_usd)}</dd>
        <dt>Latency</dt>
        <dd>{fmt.ms(call.latency_ms)}</dd>
        <dt>Time to first token</dt>
        <dd>{fmt.ms(call.ttft_ms)}</dd>
        <dt>Finish reason</dt>
        <dd>{call.finish_reason ?? '—'}</dd>
        <dt>Error</dt>
        <dd>{call.error ?? '—'}</dd>
      </dl>
      <h4>Content</h4>
      <pre class="text" data-testid="call-content">{call.response_content ?? '(none)'}</pre>
      {call.tool_calls && call.tool_calls.length > 0 && (
        <>
          <h4>Tool calls</h4>
          <pre class="text">{JSON.stringify(call.tool_calls, null, 2)}</pre>
        </>
      )}
    </li>
  );
}
