import type { TeamListQuery } from '@creditgate/client';
import { useEffect, useState } from 'preact/hooks';
import { useLocation } from 'preact-iso';
import { admin, fmt, newIdempotencyKey, useAction, useData } from '../api';
import { ErrorNote, Field, Loading, Page, Pager, SecretOnce, Section, SortHeader, StatusBadge, usePager, valueOf } from '../components';

type Sort = NonNullable<TeamListQuery['sort']>;

export function Teams() {
  const { query } = useLocation();
  return (
    <Page title="Teams">
      <CreateTeam organizationId={query.organization_id ?? ''} open={query.create === '1'} />
      <Section title="All teams">
        <TeamTable organizationId={query.organization_id} />
      </Section>
    </Page>
  );
}

/** Searchable, filterable, sortable and paged: every change asks the server (keyset pages, nothing loaded in bulk). */
export function TeamTable({ organizationId }: { organizationId?: string | undefined }) {
  const [q, setQ] = useState('');
  const [search, setSearch] = useState('');
  const [status, setStatus] = useState<TeamListQuery['status'] | ''>('');
  const [sort, setSort] = useState<Sort>('team_id');
  const [order, setOrder] = useState<'asc' | 'desc'>('asc');
  const pager = usePager();
  // A new search waits for typing to pause.
  useEffect(() => {
    const timer = setTimeout(() => setSearch(q.trim()), 250);
    return () => clearTimeout(timer);
  }, [q]);
  useEffect(() => pager.reset(), [search, status, sort, order, organizationId]);
  const list = useData(
    () =>
      admin().teams.list({
        limit: 25,
        cursor: pager.cursor,
        sort,
        order,
        ...(search && { q: search }),
        ...(status && { status }),
        ...(organizationId && { organization_id: organizationId }),
      }),
    [pager.cursor, search, status, sort, order, organizationId],
  );
  const onSort = (column: Sort, nextOrder: 'asc' | 'desc') => {
    setSort(column);
    setOrder(nextOrder);
  };
  return (
    <>
      <div class="filters" role="search" aria-label="Find teams">
        <Field label="Search teams">
          <input type="search" placeholder="id or alias" value={q} onInput={(event) => setQ(valueOf(event))} />
        </Field>
        <Field label="Status">
          <select value={status} onChange={(event) => setStatus(valueOf(event) as TeamListQuery['status'] | '')}>
            <option value="">Active and suspended</option>
            <option value="active">Active</option>
            <option value="suspended">Suspended</option>
            <option value="archived">Archived</option>
          </select>
        </Field>
      </div>
      <ErrorNote error={list.error} />
      {!list.data ? (
        <Loading what="teams" />
      ) : (
        <>
          <div class="table-wrap">
            <table aria-busy={list.loading}>
              <thead>
                <tr>
                  <SortHeader label="Team" column="team_id" sort={sort} order={order} onSort={onSort} />
                  <th scope="col">Organization</th>
                  <th scope="col">Status</th>
                  <th scope="col">Budget mode</th>
                  <SortHeader label="Balance" column="balance" sort={sort} order={order} onSort={onSort} />
                  <th scope="col">Held</th>
                  <SortHeader label="Available" column="credits_remaining" sort={sort} order={order} onSort={onSort} />
                  <SortHeader label="Last activity" column="last_activity_at" sort={sort} order={order} onSort={onSort} />
                  <SortHeader label="Created" column="created_at" sort={sort} order={order} onSort={onSort} />
                </tr>
              </thead>
              <tbody>
                {list.data.data.map((team) => (
                  <tr key={team.team_id}>
                    <th scope="row">
                      <a href={`/console/teams/${encodeURIComponent(team.team_id)}`}>{team.team_id}</a>
                      {team.team_alias && <div class="muted">{team.team_alias}</div>}
                    </th>
                    <td>
                      <a href={`/console/organizations/${encodeURIComponent(team.organization_id)}`}>{team.organization_id}</a>
                    </td>
                    <td>
                      <StatusBadge status={team.status} />
                    </td>
                    <td>{team.budget_mode}</td>
                    <td>{fmt.credits(team.balance)}</td>
                    <td>{fmt.credits(team.held)}</td>
                    <td>{fmt.credits(team.credits_remaining)}</td>
                    <td>{fmt.date(team.last_activity_at)}</td>
                    <td>{fmt.date(team.created_at)}</td>
                  </tr>
                ))}
                {list.data.data.length === 0 && (
                  <tr>
                    <td colSpan={9} class="muted">
                      No team matches.
                    </td>
                  </tr>
                )}
              </tbody>
            </table>
          </div>
          <Pager pager={pager} nextCursor={list.data.next_cursor} label="Teams" />
        </>
      )}
    </>
  );
}

function CreateTeam({ organizationId, open }: { organizationId: string; open: boolean }) {
  const groups = useData(() => admin().modelGroups.list(), []);
  const [organization, setOrganization] = useState(organizationId);
  const [teamId, setTeamId] = useState('');
  const [alias, setAlias] = useState('');
  const [chosen, setChosen] = useState<string[]>([]);
  const [credits, setCredits] = useState('0');
  const [key, setKey] = useState(newIdempotencyKey);
  const [created, setCreated] = useState<{ teamId: string; secret: string } | null>(null);
  const create = useAction(async () => {
    const team = await admin().teams.create(
      {
        organization_id: organization,
        team_id: teamId,
        ...(alias && { team_alias: alias }),
        model_groups: chosen,
        credits_allocated: Number(credits),
      },
      { idempotencyKey: key },
    );
    setKey(newIdempotencyKey());
    setCreated({ teamId: team.team_id, secret: team.virtual_key });
    setTeamId('');
    setAlias('');
  });
  const { route } = useLocation();
  return (
    <details class="card" open={open || undefined}>
      <summary>
        <h2>Create a team</h2>
      </summary>
      {created ? (
        <>
          <SecretOnce label={`Virtual key of ${created.teamId}`} secret={created.secret} onDone={() => route(`/console/teams/${encodeURIComponent(created.teamId)}`)} />
        </>
      ) : (
        <form
          aria-label="Create a team"
          onSubmit={(event) => {
            event.preventDefault();
            void create.run();
          }}
        >
          <div class="form-grid">
            <Field label="Team organization">
              <input required value={organization} onInput={(event) => setOrganization(valueOf(event))} />
            </Field>
            <Field label="Team id" hint="letters, digits, . _ -">
              <input required pattern="[A-Za-z0-9][A-Za-z0-9._\-]{0,63}" value={teamId} onInput={(event) => setTeamId(valueOf(event))} />
            </Field>
            <Field label="Team alias">
              <input maxLength={200} value={alias} onInput={(event) => setAlias(valueOf(event))} />
            </Field>
            <Field label="Initial credits">
              <input type="number" min={0} step={1} required value={credits} onInput={(event) => setCredits(valueOf(event))} />
            </Field>
          </div>
          <fieldset>
            <legend>Model groups (the first checked is the default)</legend>
            {groups.data?.data.map((group) => (
              <label key={group.group_name} class="check">
                <input
                  type="checkbox"
                  checked={chosen.includes(group.group_name)}
                  onChange={(event) =>
                    setChosen((list) => (event.currentTarget.checked ? [...list, group.group_name] : list.filter((name) => name !== group.group_name)))
                  }
                />{' '}
                {group.group_name}
              </label>
            ))}
            {groups.data?.data.length === 0 && <p class="muted">No model group yet: create one under Model groups.</p>}
          </fieldset>
          <ErrorNote error={create.error} />
          <button type="submit" class="primary" disabled={create.pending}>
            Create team
          </button>
        </form>
      )}
    </details>
  );
}
