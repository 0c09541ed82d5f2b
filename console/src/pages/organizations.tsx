import { useState } from 'preact/hooks';
import { useLocation } from 'preact-iso';
import { admin, fmt, newIdempotencyKey, useAction, useData } from '../api';
import { ErrorNote, Field, Loading, Page, Pager, Section, Stat, usePager, valueOf } from '../components';
import { TeamTable } from './teams';

export function Organizations() {
  const pager = usePager();
  const list = useData(() => admin().organizations.list({ limit: 50, cursor: pager.cursor }), [pager.cursor]);
  return (
    <Page title="Organizations">
      <CreateOrganization onCreated={list.reload} />
      <Section title="All organizations">
        <ErrorNote error={list.error} />
        {!list.data ? (
          <Loading what="organizations" />
        ) : (
          <>
            <table>
              <thead>
                <tr>
                  <th scope="col">Organization</th>
                  <th scope="col">Name</th>
                  <th scope="col">Teams</th>
                  <th scope="col">Created</th>
                </tr>
              </thead>
              <tbody>
                {list.data.data.map((organization) => (
                  <tr key={organization.organization_id}>
                    <th scope="row">
                      <a href={`/console/organizations/${encodeURIComponent(organization.organization_id)}`}>{organization.organization_id}</a>
                    </th>
                    <td>{organization.name}</td>
                    <td>{fmt.int(organization.team_count)}</td>
                    <td>{fmt.date(organization.created_at)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
            <Pager pager={pager} nextCursor={list.data.next_cursor} label="Organizations" />
          </>
        )}
      </Section>
    </Page>
  );
}

function CreateOrganization({ onCreated }: { onCreated: () => void }) {
  const { route } = useLocation();
  const [id, setId] = useState('');
  const [name, setName] = useState('');
  const [key, setKey] = useState(newIdempotencyKey);
  const create = useAction(async () => {
    const created = await admin().organizations.create({ organization_id: id, name }, { idempotencyKey: key });
    setKey(newIdempotencyKey());
    onCreated();
    route(`/console/organizations/${encodeURIComponent(created.organization_id)}`);
  });
  return (
    <Section title="Create an organization">
      <form
        class="inline-form"
        aria-label="Create an organization"
        onSubmit={(event) => {
          event.preventDefault();
          void create.run();
        }}
      >
        <Field label="Organization id" hint="letters, digits, . _ -">
          <input required pattern="[A-Za-z0-9][A-Za-z0-9._\-]{0,63}" value={id} onInput={(event) => setId(valueOf(event))} />
        </Field>
        <Field label="Organization name">
          <input required maxLength={200} value={name} onInput={(event) => setName(valueOf(event))} />
        </Field>
        <button type="submit" class="primary" disabled={create.pending}>
          Create organization
        </button>
      </form>
      <ErrorNote error={create.error} />
    </Section>
  );
}

export function OrganizationPage({ id }: { id: string }) {
  const organization = useData(() => admin().organizations.get(id), [id]);
  const usage = useData(() => admin().organizations.usage(id), [id]);
  return (
    <Page title={organization.data ? `Organization ${organization.data.name}` : `Organization ${id}`}>
      <ErrorNote error={organization.error} />
      {organization.data && (
        <p class="muted">
          <span class="mono">{organization.data.organization_id}</span> · created {fmt.date(organization.data.created_at)}
        </p>
      )}
      <Section title="Usage, last 30 days">
        <ErrorNote error={usage.error} />
        {usage.data && (
          <div class="stats">
            <Stat label="Jobs" value={fmt.int(usage.data.totals.jobs)} />
            <Stat label="Calls" value={fmt.int(usage.data.totals.calls)} />
            <Stat label="Tokens" value={fmt.int(usage.data.totals.total_tokens)} />
            <Stat label="Credits charged" value={fmt.credits(usage.data.totals.credits_charged)} />
            <Stat label="Upstream cost" value={fmt.usd(usage.data.totals.cost_usd)} />
          </div>
        )}
      </Section>
      <Section title="Teams">
        <p>
          <a href={`/console/teams?organization_id=${encodeURIComponent(id)}&create=1`}>Create a team in this organization</a>
        </p>
        <TeamTable organizationId={id} />
      </Section>
    </Page>
  );
}
