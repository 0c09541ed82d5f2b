import type { BudgetMode, CreditTransaction, Team, UpdateTeamRequest } from '@creditgate/client';
import { useMemo, useState } from 'preact/hooks';
import { admin, fmt, isoDaysAgo, localToIso, newIdempotencyKey, useAction, useData } from '../api';
import { ConfirmButton, ErrorNote, Field, LineChart, Loading, Page, Pager, SecretOnce, Section, Stat, StatusBadge, usePager, valueOf } from '../components';

export function TeamPage({ id }: { id: string }) {
  const team = useData(() => admin().teams.get(id), [id]);
  return (
    <Page title={`Team ${id}`}>
      <ErrorNote error={team.error} />
      {!team.data ? (
        !team.error && <Loading what="the team" />
      ) : (
        <>
          <Summary team={team.data} reload={team.reload} />
          <Settings team={team.data} reload={team.reload} />
          <Keys teamId={id} archived={team.data.status === 'archived'} />
          <Credits teamId={id} reload={team.reload} />
          <p>
            <a href={`/console/jobs?team_id=${encodeURIComponent(id)}`}>This team's jobs</a>
          </p>
        </>
      )}
    </Page>
  );
}

function Summary({ team, reload }: { team: Team; reload: () => void }) {
  const status = useAction(async (action: 'suspend' | 'resume' | 'delete') => {
    const client = admin();
    if (action === 'suspend') await client.teams.suspend(team.team_id);
    else if (action === 'resume') await client.teams.resume(team.team_id);
    else await client.teams.delete(team.team_id);
    reload();
  });
  return (
    <Section title="Summary">
      <div class="stats">
        <Stat label="Status" value={<StatusBadge status={team.status} />} />
        <Stat label="Balance" value={<span data-testid="team-balance">{fmt.credits(team.credits.balance)}</span>} />
        <Stat label="Held" value={fmt.credits(team.credits.held)} />
        <Stat label="Available" value={fmt.credits(team.credits.credits_remaining)} />
        <Stat label="Budget mode" value={team.budget_mode} />
      </div>
      <p class="muted">
        Organization <a href={`/console/organizations/${encodeURIComponent(team.organization_id)}`}>{team.organization_id}</a> · created {fmt.date(team.created_at)}
      </p>
      {team.status !== 'archived' && (
        <div class="row">
          {team.status === 'active' ? (
            <ConfirmButton label="Suspend team" question={`Suspend ${team.team_id}? Its keys stop working at once.`} confirm="Suspend" onConfirm={() => void status.run('suspend')} />
          ) : (
            <button type="button" onClick={() => void status.run('resume')} disabled={status.pending}>
              Resume team
            </button>
          )}
          <ConfirmButton
            danger
            label="Delete team"
            question={`Delete ${team.team_id}? It is archived: its keys are revoked and it can never be used again; its ledger, jobs and calls are kept. A team with open jobs or credits cannot be deleted.`}
            confirm="Delete (archive)"
            onConfirm={() => void status.run('delete')}
          />
        </div>
      )}
      <ErrorNote error={status.error} />
    </Section>
  );
}

const numberOrNull = (text: string) => (text.trim() === '' ? null : Number(text));

function Settings({ team, reload }: { team: Team; reload: () => void }) {
  const groups = useData(() => admin().modelGroups.list(), []);
  const [alias, setAlias] = useState(team.team_alias ?? '');
  const [chosen, setChosen] = useState(team.model_groups);
  const [mode, setMode] = useState<BudgetMode>(team.budget_mode);
  const [perJob, setPerJob] = useState(String(team.credits_per_job));
  const [tokensPerCredit, setTokensPerCredit] = useState(team.tokens_per_credit ? String(team.tokens_per_credit) : '');
  const [perDollar, setPerDollar] = useState(team.credits_per_dollar ?? '');
  const [waive, setWaive] = useState(team.waive_failed_jobs);
  const [maxCalls, setMaxCalls] = useState(String(team.max_calls_per_job));
  const [maxTokens, setMaxTokens] = useState(String(team.max_tokens_per_job));
  const [limits, setLimits] = useState({
    requests_per_minute: team.limits.requests_per_minute?.toString() ?? '',
    tokens_per_minute: team.limits.tokens_per_minute?.toString() ?? '',
    max_concurrent_jobs: team.limits.max_concurrent_jobs?.toString() ?? '',
    max_concurrent_calls: team.limits.max_concurrent_calls?.toString() ?? '',
  });
  const [metadata, setMetadata] = useState(JSON.stringify(team.metadata, null, 2));
  const [saved, setSaved] = useState(false);
  const save = useAction(async () => {
    let parsedMetadata: Record<string, unknown>;
    try {
      parsedMetadata = JSON.parse(metadata || '{}') as Record<string, unknown>;
    } catch {
      throw new Error('Metadata must be a JSON object');
    }
    const body: UpdateTeamRequest = {
      team_alias: alias.trim() === '' ? null : alias.trim(),
      model_groups: chosen,
      budget_mode: mode,
      credits_per_job: Number(perJob),
      ...(tokensPerCredit && { tokens_per_credit: Number(tokensPerCredit) }),
      ...(perDollar && { credits_per_dollar: perDollar }),
      waive_failed_jobs: waive,
      max_calls_per_job: Number(maxCalls),
      max_tokens_per_job: Number(maxTokens),
      limits: {
        requests_per_minute: numberOrNull(limits.requests_per_minute),
        tokens_per_minute: numberOrNull(limits.tokens_per_minute),
        max_concurrent_jobs: numberOrNull(limits.max_concurrent_jobs),
        max_concurrent_calls: numberOrNull(limits.max_concurrent_calls),
      },
      metadata: parsedMetadata,
    };
    await admin().teams.update(team.team_id, body);
    setSaved(true);
    reload();
  });
  const move = (name: string, by: number) =>
    setChosen((list) => {
      const index = list.indexOf(name);
      const target = index + by;
      if (index < 0 || target < 0 || target >= list.length) return list;
      const next = [...list];
      [next[index], next[target]] = [next[target]!, next[index]!];
      return next;
    });
  const allGroups = [...new Set([...chosen, ...(groups.data?.data.map((group) => group.group_name) ?? [])])];
  return (
    <Section title="Settings">
      <form
        aria-label="Team settings"
        onSubmit={(event) => {
          event.preventDefault();
          setSaved(false);
          void save.run();
        }}
      >
        <div class="form-grid">
          <Field label="Alias">
            <input maxLength={200} value={alias} onInput={(event) => setAlias(valueOf(event))} />
          </Field>
          <Field label="Budget mode">
            <select value={mode} onChange={(event) => setMode(valueOf(event) as BudgetMode)}>
              <option value="job_based">job_based (credits per job)</option>
              <option value="consumption_tokens">consumption_tokens (tokens per credit)</option>
              <option value="consumption_usd">consumption_usd (credits per dollar)</option>
            </select>
          </Field>
          <Field label="Credits per job">
            <input type="number" min={1} required value={perJob} onInput={(event) => setPerJob(valueOf(event))} />
          </Field>
          <Field label="Tokens per credit">
            <input type="number" min={1} value={tokensPerCredit} onInput={(event) => setTokensPerCredit(valueOf(event))} />
          </Field>
          <Field label="Credits per dollar">
            <input inputMode="decimal" pattern="\d{1,12}(\.\d{1,6})?" value={perDollar} onInput={(event) => setPerDollar(valueOf(event))} />
          </Field>
          <Field label="Max calls per job">
            <input type="number" min={1} required value={maxCalls} onInput={(event) => setMaxCalls(valueOf(event))} />
          </Field>
          <Field label="Max tokens per job">
            <input type="number" min={1} required value={maxTokens} onInput={(event) => setMaxTokens(valueOf(event))} />
          </Field>
          {(Object.keys(limits) as (keyof typeof limits)[]).map((name) => (
            <Field key={name} label={`Limit: ${name.replace(/_/g, ' ')}`} hint="empty: no limit">
              <input type="number" min={1} value={limits[name]} onInput={(event) => setLimits((all) => ({ ...all, [name]: valueOf(event) }))} />
            </Field>
          ))}
        </div>
        <label class="check">
          <input type="checkbox" checked={waive} onChange={(event) => setWaive(event.currentTarget.checked)} /> Waive failed jobs (trust this team's
          "failed" reports)
        </label>
        <fieldset>
          <legend>Model groups (in order: the first is the default)</legend>
          <ul class="plain">
            {allGroups.map((name) => (
              <li key={name} class="row">
                <label class="check">
                  <input
                    type="checkbox"
                    checked={chosen.includes(name)}
                    onChange={(event) => setChosen((list) => (event.currentTarget.checked ? [...list, name] : list.filter((item) => item !== name)))}
                  />{' '}
                  {name}
                </label>
                {chosen.includes(name) && (
                  <>
                    <button type="button" class="small" aria-label={`Move ${name} up`} onClick={() => move(name, -1)}>
                      ↑
                    </button>
                    <button type="button" class="small" aria-label={`Move ${name} down`} onClick={() => move(name, 1)}>
                      ↓
                    </button>
                  </>
                )}
              </li>
            ))}
          </ul>
        </fieldset>
        <Field label="Metadata (JSON)">
          <textarea rows={4} class="mono" value={metadata} onInput={(event) => setMetadata(valueOf(event))} />
        </Field>
        <ErrorNote error={save.error} />
        <div class="row">
          <button type="submit" class="primary" disabled={save.pending}>
            Save settings
          </button>
          {saved && <span role="status">Saved.</span>}
        </div>
      </form>
    </Section>
  );
}

function Keys({ teamId, archived }: { teamId: string; archived: boolean }) {
  const keys = useData(() => admin().keys.list(teamId), [teamId]);
  const [name, setName] = useState('');
  const [expires, setExpires] = useState('');
  const [idempotencyKey, setIdempotencyKey] = useState(newIdempotencyKey);
  const [secret, setSecret] = useState<string | null>(null);
  const create = useAction(async () => {
    const expiresAt = localToIso(expires);
    const key = await admin().keys.create(teamId, { ...(name && { name }), ...(expiresAt && { expires_at: expiresAt }) }, { idempotencyKey });
    setIdempotencyKey(newIdempotencyKey());
    setSecret(key.virtual_key);
    setName('');
    setExpires('');
    keys.reload();
  });
  const revoke = useAction(async (keyId: string) => {
    await admin().keys.revoke(keyId);
    keys.reload();
  });
  return (
    <Section title="Virtual keys">
      {secret && <SecretOnce label="New virtual key" secret={secret} onDone={() => setSecret(null)} />}
      {!archived && !secret && (
        <form
          class="inline-form"
          aria-label="Create a key"
          onSubmit={(event) => {
            event.preventDefault();
            void create.run();
          }}
        >
          <Field label="Key name">
            <input maxLength={200} value={name} onInput={(event) => setName(valueOf(event))} />
          </Field>
          <Field label="Expires (UTC, optional)">
            <input type="datetime-local" value={expires} onInput={(event) => setExpires(valueOf(event))} />
          </Field>
          <button type="submit" class="primary" disabled={create.pending}>
            Create key
          </button>
        </form>
      )}
      <ErrorNote error={create.error ?? revoke.error ?? keys.error} />
      {keys.data && (
        <table>
          <thead>
            <tr>
              <th scope="col">Prefix</th>
              <th scope="col">Name</th>
              <th scope="col">Status</th>
              <th scope="col">Created</th>
              <th scope="col">Last used</th>
              <th scope="col">Expires</th>
              <th scope="col">
                <span class="sr-only">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {keys.data.data.map((key) => (
              <tr key={key.key_id}>
                <td class="mono">{key.key_prefix}…</td>
                <td>{key.name ?? '—'}</td>
                <td>
                  <StatusBadge status={key.status} />
                </td>
                <td>{fmt.date(key.created_at)}</td>
                <td>{fmt.date(key.last_used_at)}</td>
                <td>{fmt.date(key.expires_at)}</td>
                <td>
                  {key.status === 'active' && (
                    <ConfirmButton
                      danger
                      label={`Revoke ${key.name ?? key.key_prefix}`}
                      question={`Revoke the key ${key.key_prefix}… (${key.name ?? 'unnamed'})? It stops working at once, on every instance.`}
                      confirm="Revoke key"
                      onConfirm={() => void revoke.run(key.key_id)}
                    />
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </Section>
  );
}

function Credits({ teamId, reload }: { teamId: string; reload: () => void }) {
  const [direction, setDirection] = useState<'add' | 'deduct'>('add');
  const [amount, setAmount] = useState('');
  const [reason, setReason] = useState('');
  // One key per intended change: a double-click or a retry sends the same key and the server applies it once.
  const [idempotencyKey, setIdempotencyKey] = useState(newIdempotencyKey);
  const [done, setDone] = useState<string | null>(null);
  const [type, setType] = useState('');
  const [from, setFrom] = useState('');
  const [to, setTo] = useState('');
  const pager = usePager();
  const filters = { ...(type && { type: type as CreditTransaction['type'] }), ...(localToIso(from) && { from: localToIso(from) }), ...(localToIso(to) && { to: localToIso(to) }) };
  const ledger = useData(() => admin().credits.transactions(teamId, { limit: 20, cursor: pager.cursor, ...filters }), [teamId, pager.cursor, type, from, to]);
  const history = useData(() => admin().credits.balanceHistory(teamId, { from: isoDaysAgo(29) }), [teamId]);
  const change = useAction(async () => {
    const body = { credits: Number(amount), reason };
    const client = admin();
    const answer =
      direction === 'add' ? await client.credits.add(teamId, body, { idempotencyKey }) : await client.credits.deduct(teamId, body, { idempotencyKey });
    setIdempotencyKey(newIdempotencyKey());
    setDone(`${direction === 'add' ? 'Added' : 'Deducted'} ${fmt.credits(body.credits)} credits; balance ${fmt.credits(answer.balance.balance)}.`);
    setAmount('');
    setReason('');
    pager.reset();
    ledger.reload();
    history.reload();
    reload();
  });
  const exportCsv = useAction(async () => {
    const text = await admin().credits.exportCsv(teamId, filters);
    const url = URL.createObjectURL(new Blob([text], { type: 'text/csv' }));
    const link = document.createElement('a');
    link.href = url;
    link.download = `${teamId}-ledger.csv`;
    link.click();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  });
  const chart = useMemo(() => {
    const points = history.data?.points ?? [];
    return {
      x: points.map((point) => Date.parse(point.day) / 1000),
      series: [
        { label: 'Balance', values: points.map((point) => point.balance), color: '#2563eb' },
        { label: 'Held', values: points.map((point) => point.held), color: '#b45309' },
      ],
    };
  }, [history.data]);
  return (
    <Section title="Credits">
      <form
        class="inline-form"
        aria-label="Change credits"
        onSubmit={(event) => {
          event.preventDefault();
          setDone(null);
          void change.run();
        }}
      >
        <Field label="Change">
          <select value={direction} onChange={(event) => setDirection(valueOf(event) as 'add' | 'deduct')}>
            <option value="add">Add credits</option>
            <option value="deduct">Deduct credits</option>
          </select>
        </Field>
        <Field label="Credits">
          <input type="number" min={1} step={1} required value={amount} onInput={(event) => setAmount(valueOf(event))} />
        </Field>
        <Field label="Reason">
          <input required maxLength={500} value={reason} onInput={(event) => setReason(valueOf(event))} />
        </Field>
        <button type="submit" class="primary" disabled={change.pending}>
          Apply
        </button>
      </form>
      <ErrorNote error={change.error} />
      {done && <p role="status">{done}</p>}
      {history.data && <LineChart title="Balance over the last 30 days" x={chart.x} series={chart.series} leftLabel="credits" height={180} />}
      <h3>Ledger</h3>
      <div class="filters" aria-label="Ledger filters">
        <Field label="Entry type">
          <select
            value={type}
            onChange={(event) => {
              setType(valueOf(event));
              pager.reset();
            }}
          >
            <option value="">All</option>
            {['grant', 'adjustment', 'hold', 'release', 'charge', 'refund'].map((kind) => (
              <option key={kind} value={kind}>
                {kind}
              </option>
            ))}
          </select>
        </Field>
        <Field label="From (UTC)">
          <input type="datetime-local" value={from} onInput={(event) => (setFrom(valueOf(event)), pager.reset())} />
        </Field>
        <Field label="To (UTC)">
          <input type="datetime-local" value={to} onInput={(event) => (setTo(valueOf(event)), pager.reset())} />
        </Field>
        <button type="button" onClick={() => void exportCsv.run()} disabled={exportCsv.pending}>
          Export CSV
        </button>
      </div>
      <ErrorNote error={ledger.error ?? exportCsv.error} />
      {ledger.data && (
        <>
          <div class="table-wrap">
            <table>
              <thead>
                <tr>
                  <th scope="col">When</th>
                  <th scope="col">Type</th>
                  <th scope="col">Amount</th>
                  <th scope="col">Held change</th>
                  <th scope="col">Balance after</th>
                  <th scope="col">Job</th>
                  <th scope="col">Reason</th>
                  <th scope="col">By</th>
                </tr>
              </thead>
              <tbody>
                {ledger.data.data.map((entry) => (
                  <tr key={entry.transaction_id}>
                    <td>{fmt.date(entry.created_at)}</td>
                    <td>{entry.type}</td>
                    <td>{fmt.credits(entry.amount)}</td>
                    <td>{fmt.credits(entry.held_change)}</td>
                    <td>{fmt.credits(entry.balance_after)}</td>
                    <td>{entry.job_id ? <a href={`/console/jobs/${entry.job_id}`}>{entry.job_id}</a> : '—'}</td>
                    <td>{entry.reason ?? '—'}</td>
                    <td class="mono">{entry.actor}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          <Pager pager={pager} nextCursor={ledger.data.next_cursor} label="Ledger" />
        </>
      )}
    </Section>
  );
}
