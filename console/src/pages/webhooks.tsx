import type { WebhookDelivery, WebhookDeliveryPage, WebhookEndpoint, WebhookEventType } from '@creditgate/client';
import { useEffect, useState } from 'preact/hooks';
import { useLocation } from 'preact-iso';
import { admin, fmt, newIdempotencyKey, useAction, useData } from '../api';
import { ConfirmButton, ErrorNote, Field, Loading, Page, SecretOnce, Section, StatusBadge, valueOf } from '../components';

/** The event catalogue (README "Webhooks"): a Record, so the type check fails here when the server adds a type. */
const EVENTS: Record<WebhookEventType, string> = {
  'credits.added': 'credits are granted',
  'credits.low': 'available credits fall below the low-balance line',
  'credits.depleted': 'the team can no longer pay for a job',
  'credits.refill_requested': 'available credits fall below the auto-refill line',
  'credits.refill_failed': 'an auto-refill charge failed',
  'credits.refunded': 'a Stripe refund took credits back',
  'job.settled': 'a job is settled',
  'team.suspended': 'a team is suspended',
  'team.resumed': 'a suspended team is resumed',
  'key.created': 'a virtual key is created',
  'key.revoked': 'a virtual key is revoked',
};
const EVENT_TYPES = Object.keys(EVENTS) as WebhookEventType[];
const DELIVERY_STATUSES: WebhookDelivery['status'][] = ['pending', 'delivered', 'failed'];
const DELIVERIES_PER_PAGE = 25;
/** How often the newest deliveries are read again while one of them is pending. */
const PENDING_REFRESH_MS = 1000;

const endpointHref = (endpoint: WebhookEndpoint) => `/console/webhooks/${encodeURIComponent(endpoint.endpoint_id)}`;
const eventsText = (events: string[] | null) => (events ? events.join(', ') : 'all types');
const SECRET_KEPT = 'it encrypted, to sign with, and never shows it again';

export function Webhooks() {
  const endpoints = useData(() => admin().webhooks.listEndpoints(), []);
  return (
    <Page title="Webhooks">
      <Register onCreated={endpoints.reload} />
      <Section title="Endpoints">
        <ErrorNote error={endpoints.error} />
        {!endpoints.data ? (
          !endpoints.error && <Loading what="webhook endpoints" />
        ) : (
          <div class="table-wrap">
            <table aria-busy={endpoints.loading}>
              <thead>
                <tr>
                  <th scope="col">URL</th>
                  <th scope="col">Events</th>
                  <th scope="col">Status</th>
                  <th scope="col">Description</th>
                  <th scope="col">Created</th>
                </tr>
              </thead>
              <tbody>
                {endpoints.data.data.map((endpoint) => (
                  <tr key={endpoint.endpoint_id}>
                    <th scope="row" class="mono">
                      <a href={endpointHref(endpoint)}>{endpoint.url}</a>
                    </th>
                    <td>{eventsText(endpoint.events)}</td>
                    <td>
                      <EnabledBadge endpoint={endpoint} />
                    </td>
                    <td>{endpoint.description ?? '—'}</td>
                    <td>{fmt.date(endpoint.created_at)}</td>
                  </tr>
                ))}
                {endpoints.data.data.length === 0 && (
                  <tr>
                    <td colSpan={5} class="muted">
                      No endpoint yet: register one above.
                    </td>
                  </tr>
                )}
              </tbody>
            </table>
          </div>
        )}
      </Section>
    </Page>
  );
}

const EnabledBadge = ({ endpoint }: { endpoint: WebhookEndpoint }) => <StatusBadge status={endpoint.enabled ? 'enabled' : 'disabled'} />;

function Register({ onCreated }: { onCreated: () => void }) {
  const [url, setUrl] = useState('');
  const [events, setEvents] = useState<WebhookEventType[]>([]);
  const [description, setDescription] = useState('');
  // One key per intended registration: a double-click or a retry registers one endpoint, with one secret.
  const [idempotencyKey, setIdempotencyKey] = useState(newIdempotencyKey);
  const [created, setCreated] = useState<{ url: string; secret: string } | null>(null);
  const register = useAction(async () => {
    const endpoint = await admin().webhooks.createEndpoint(
      { url: url.trim(), ...(events.length > 0 && { events }), ...(description.trim() && { description: description.trim() }) },
      { idempotencyKey },
    );
    setIdempotencyKey(newIdempotencyKey());
    setCreated({ url: endpoint.url, secret: endpoint.secret });
    setUrl('');
    setEvents([]);
    setDescription('');
    onCreated();
  });
  return (
    <Section title="Register an endpoint">
      {created ? (
        <SecretOnce label={`Signing secret of ${created.url}`} secret={created.secret} kept={SECRET_KEPT} onDone={() => setCreated(null)} />
      ) : (
        <form
          aria-label="Register an endpoint"
          onSubmit={(event) => {
            event.preventDefault();
            void register.run();
          }}
        >
          <div class="form-grid">
            <Field label="Endpoint URL" hint="http(s); redirects are not followed">
              <input type="url" required maxLength={2048} class="mono" value={url} onInput={(event) => setUrl(valueOf(event))} />
            </Field>
            <Field label="Description">
              <input maxLength={500} value={description} onInput={(event) => setDescription(valueOf(event))} />
            </Field>
          </div>
          <fieldset>
            <legend>Events (none checked: every type)</legend>
            <ul class="plain">
              {EVENT_TYPES.map((type) => (
                <li key={type}>
                  <label class="check">
                    <input
                      type="checkbox"
                      checked={events.includes(type)}
                      onChange={(event) => setEvents((list) => (event.currentTarget.checked ? [...list, type] : list.filter((item) => item !== type)))}
                    />{' '}
                    <span class="mono">{type}</span> <span class="muted">— {EVENTS[type]}</span>
                  </label>
                </li>
              ))}
            </ul>
          </fieldset>
          <ErrorNote error={register.error} />
          <button type="submit" class="primary" disabled={register.pending}>
            Register endpoint
          </button>
        </form>
      )}
    </Section>
  );
}

/** One endpoint: its settings and actions, and its deliveries. The API lists endpoints only, never one by id. */
export function WebhookEndpointPage({ id }: { id: string }) {
  const endpoints = useData(() => admin().webhooks.listEndpoints(), [id]);
  const endpoint = endpoints.data?.data.find((candidate) => candidate.endpoint_id === id);
  return (
    <Page title={`Webhook endpoint ${id}`}>
      <ErrorNote error={endpoints.error ?? (endpoints.data && !endpoint ? `There is no webhook endpoint ${id}.` : undefined)} />
      {endpoint ? (
        <>
          <Summary endpoint={endpoint} reload={endpoints.reload} />
          <Deliveries endpointId={id} />
        </>
      ) : (
        !endpoints.data && !endpoints.error && <Loading what="the endpoint" />
      )}
      <p>
        <a href="/console/webhooks">All webhook endpoints</a>
      </p>
    </Page>
  );
}

function Summary({ endpoint, reload }: { endpoint: WebhookEndpoint; reload: () => void }) {
  const { route } = useLocation();
  const [secret, setSecret] = useState<string | null>(null);
  const change = useAction(async (action: 'enable' | 'disable' | 'rotate' | 'delete') => {
    const webhooks = admin().webhooks;
    if (action === 'rotate') setSecret((await webhooks.rotateEndpointSecret(endpoint.endpoint_id)).secret);
    else if (action === 'delete') {
      await webhooks.deleteEndpoint(endpoint.endpoint_id);
      route('/console/webhooks');
      return;
    } else await webhooks.updateEndpoint(endpoint.endpoint_id, { enabled: action === 'enable' });
    reload();
  });
  return (
    <Section title="Endpoint">
      {secret && <SecretOnce label={`New signing secret of ${endpoint.url}`} secret={secret} kept={SECRET_KEPT} onDone={() => setSecret(null)} />}
      <dl class="details">
        <dt>URL</dt>
        <dd class="mono">{endpoint.url}</dd>
        <dt>Status</dt>
        <dd>
          <EnabledBadge endpoint={endpoint} />
        </dd>
        <dt>Events</dt>
        <dd>{eventsText(endpoint.events)}</dd>
        <dt>Description</dt>
        <dd>{endpoint.description ?? '—'}</dd>
        <dt>Created</dt>
        <dd>{fmt.date(endpoint.created_at)}</dd>
        <dt>Updated</dt>
        <dd>{fmt.date(endpoint.updated_at)}</dd>
      </dl>
      <div class="row">
        {endpoint.enabled ? (
          <ConfirmButton
            label="Disable endpoint"
            question={`Disable ${endpoint.url}? It gets no new events while disabled; its pending deliveries wait until it is enabled again.`}
            confirm="Disable"
            onConfirm={() => void change.run('disable')}
          />
        ) : (
          <button type="button" onClick={() => void change.run('enable')} disabled={change.pending}>
            Enable endpoint
          </button>
        )}
        <ConfirmButton
          label="Rotate secret"
          question={`Rotate the signing secret of ${endpoint.url}? The current secret stops signing at once: the receiver must verify with the new one.`}
          confirm="Rotate secret"
          onConfirm={() => void change.run('rotate')}
        />
        <ConfirmButton
          danger
          label="Delete endpoint"
          question={`Delete ${endpoint.url} and its deliveries? Nothing more is sent to it.`}
          confirm="Delete endpoint"
          onConfirm={() => void change.run('delete')}
        />
      </div>
      <ErrorNote error={change.error} />
    </Section>
  );
}

function Deliveries({ endpointId }: { endpointId: string }) {
  const [status, setStatus] = useState<WebhookDelivery['status'] | ''>('');
  const filter = status ? { status } : {};
  const newest = useData(() => admin().webhooks.listDeliveries(endpointId, { limit: DELIVERIES_PER_PAGE, ...filter }), [endpointId, status]);
  /** The pages after the newest, appended by "More deliveries"; dropped when the newest page is read again. */
  const [older, setOlder] = useState<WebhookDeliveryPage | null>(null);
  const [replayed, setReplayed] = useState<WebhookDelivery | null>(null);
  const refresh = () => {
    setOlder(null);
    newest.reload();
  };
  const more = useAction(async (cursor: string) => {
    const page = await admin().webhooks.listDeliveries(endpointId, { limit: DELIVERIES_PER_PAGE, cursor, ...filter });
    setOlder((previous) => ({ data: [...(previous?.data ?? []), ...page.data], next_cursor: page.next_cursor }));
  });
  const replay = useAction(async (deliveryId: string) => {
    setReplayed(await admin().webhooks.replayDelivery(deliveryId));
    refresh();
  });
  // While only the newest page is shown, pending deliveries are followed until they are delivered or failed (reading
  // it again with older pages appended could leave a gap between them).
  const pending = !older && newest.data?.data.some((delivery) => delivery.status === 'pending');
  useEffect(() => {
    if (!pending) return;
    const timer = setTimeout(newest.reload, PENDING_REFRESH_MS);
    return () => clearTimeout(timer);
  }, [pending, newest.data, newest.reload]);
  const shown = [...(newest.data?.data ?? []), ...(older?.data ?? [])];
  const nextCursor = older ? older.next_cursor : newest.data?.next_cursor;
  return (
    <Section title="Deliveries">
      <div class="filters">
        <Field label="Delivery status">
          <select
            value={status}
            onChange={(event) => {
              setStatus(valueOf(event) as WebhookDelivery['status'] | '');
              setOlder(null);
            }}
          >
            <option value="">Any</option>
            {DELIVERY_STATUSES.map((value) => (
              <option key={value} value={value}>
                {value}
              </option>
            ))}
          </select>
        </Field>
        <button type="button" onClick={refresh}>
          Refresh deliveries
        </button>
      </div>
      {replayed && <p role="status">Replayed {replayed.event_type} as delivery {replayed.delivery_id}.</p>}
      <ErrorNote error={newest.error ?? more.error ?? replay.error} />
      {!newest.data ? (
        !newest.error && <Loading what="deliveries" />
      ) : (
        <>
          <div class="table-wrap">
            <table aria-busy={newest.loading || more.pending}>
              <caption class="sr-only">Deliveries, newest first</caption>
              <thead>
                <tr>
                  <th scope="col">Event</th>
                  <th scope="col">Event id</th>
                  <th scope="col">Status</th>
                  <th scope="col">Attempts</th>
                  <th scope="col">Last response</th>
                  <th scope="col">Created</th>
                  <th scope="col">Delivered</th>
                  <th scope="col">Next attempt</th>
                  <th scope="col">
                    <span class="sr-only">Actions</span>
                  </th>
                </tr>
              </thead>
              <tbody>
                {shown.map((delivery) => (
                  <tr key={delivery.delivery_id}>
                    <th scope="row" class="mono">
                      {delivery.event_type}
                    </th>
                    <td class="mono">{delivery.event_id}</td>
                    <td>
                      <StatusBadge status={delivery.status} />
                    </td>
                    <td>{fmt.int(delivery.attempts)}</td>
                    <td>
                      {delivery.last_status_code ?? '—'}
                      {delivery.last_error && <div class="muted">{delivery.last_error}</div>}
                    </td>
                    <td>{fmt.date(delivery.created_at)}</td>
                    <td>{fmt.date(delivery.delivered_at)}</td>
                    <td>{fmt.date(delivery.next_attempt_at)}</td>
                    <td>
                      <button type="button" class="small" aria-label={`Replay delivery ${delivery.delivery_id}`} disabled={replay.pending} onClick={() => void replay.run(delivery.delivery_id)}>
                        Replay
                      </button>
                    </td>
                  </tr>
                ))}
                {shown.length === 0 && (
                  <tr>
                    <td colSpan={9} class="muted">
                      No {status && `${status} `}deliveries.
                    </td>
                  </tr>
                )}
              </tbody>
            </table>
          </div>
          {nextCursor && (
            <button type="button" class="more" onClick={() => void more.run(nextCursor)} disabled={more.pending}>
              More deliveries
            </button>
          )}
        </>
      )}
    </Section>
  );
}
