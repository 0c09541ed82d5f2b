import type { ModelGroup } from '@creditgate/client';
import { useState } from 'preact/hooks';
import { admin, fmt, newIdempotencyKey, useAction, useData } from '../api';
import { ConfirmButton, ErrorNote, Field, Loading, Page, Section, valueOf } from '../components';

interface ModelRow {
  model_name: string;
  priority: string;
}

export function ModelGroups() {
  const groups = useData(() => admin().modelGroups.list(), []);
  const prices = useData(() => admin().modelPrices.list(), []);
  const reload = () => {
    groups.reload();
    prices.reload();
  };
  const unpriced = [...new Set(groups.data?.data.flatMap((group) => group.unpriced_models) ?? [])];
  return (
    <Page title="Model groups and prices">
      <GroupEditor key="new" onSaved={reload} />
      <Section title="Model groups">
        <ErrorNote error={groups.error} />
        {!groups.data ? (
          <Loading what="model groups" />
        ) : (
          groups.data.data.map((group) => <GroupRow key={`${group.group_name}-${group.updated_at}`} group={group} onSaved={reload} />)
        )}
      </Section>
      <Section title="Prices (USD per million tokens)">
        {unpriced.length > 0 && (
          <p class="warning" role="note">
            Unpriced models: {unpriced.join(', ')}. Teams in consumption_usd mode cannot call them until they have a price.
          </p>
        )}
        <ErrorNote error={prices.error} />
        <PriceForm onSaved={reload} suggestions={unpriced} />
        {prices.data && (
          <table>
            <thead>
              <tr>
                <th scope="col">Model</th>
                <th scope="col">Input</th>
                <th scope="col">Output</th>
                <th scope="col">Updated</th>
              </tr>
            </thead>
            <tbody>
              {prices.data.data.map((price) => (
                <tr key={price.model_name}>
                  <th scope="row" class="mono">
                    {price.model_name}
                  </th>
                  <td>{price.input_usd_per_million}</td>
                  <td>{price.output_usd_per_million}</td>
                  <td>{fmt.date(price.updated_at)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </Section>
    </Page>
  );
}

function GroupRow({ group, onSaved }: { group: ModelGroup; onSaved: () => void }) {
  const [editing, setEditing] = useState(false);
  const remove = useAction(async () => {
    await admin().modelGroups.delete(group.group_name);
    onSaved();
  });
  return (
    <article class="group" aria-label={`Model group ${group.group_name}`}>
      <div class="row">
        <h3>{group.group_name}</h3>
        {group.display_name && <span class="muted">{group.display_name}</span>}
        <button type="button" onClick={() => setEditing(!editing)} aria-expanded={editing}>
          {editing ? 'Close editor' : `Edit ${group.group_name}`}
        </button>
        <ConfirmButton danger label={`Delete ${group.group_name}`} question={`Delete the model group ${group.group_name}? Refused while a team uses it.`} confirm="Delete" onConfirm={() => void remove.run()} />
      </div>
      <ErrorNote error={remove.error} />
      <ol class="models">
        {group.models.map((model) => (
          <li key={model.model_name}>
            <span class="mono">{model.model_name}</span> <span class="muted">priority {model.priority}</span>
            {group.unpriced_models.includes(model.model_name) && <span class="badge badge-warning"> unpriced</span>}
          </li>
        ))}
      </ol>
      {editing && (
        <GroupEditor
          group={group}
          onSaved={() => {
            setEditing(false);
            onSaved();
          }}
        />
      )}
    </article>
  );
}

/** Creates a group, or edits one: its models and their priorities (lower is tried first). */
function GroupEditor({ group, onSaved }: { group?: ModelGroup; onSaved: () => void }) {
  const [name, setName] = useState(group?.group_name ?? '');
  const [displayName, setDisplayName] = useState(group?.display_name ?? '');
  const [rows, setRows] = useState<ModelRow[]>(
    group ? group.models.map((model) => ({ model_name: model.model_name, priority: String(model.priority) })) : [{ model_name: '', priority: '0' }],
  );
  const [key, setKey] = useState(newIdempotencyKey);
  const save = useAction(async () => {
    const models = rows.filter((row) => row.model_name.trim()).map((row) => ({ model_name: row.model_name.trim(), priority: Number(row.priority) }));
    if (group) await admin().modelGroups.update(group.group_name, { display_name: displayName.trim() || null, models });
    else {
      await admin().modelGroups.create({ group_name: name, ...(displayName.trim() && { display_name: displayName.trim() }), models }, { idempotencyKey: key });
      setKey(newIdempotencyKey());
      setName('');
      setDisplayName('');
      setRows([{ model_name: '', priority: '0' }]);
    }
    onSaved();
  });
  const label = group ? `Edit model group ${group.group_name}` : 'Create a model group';
  const form = (
    <form
      aria-label={label}
      onSubmit={(event) => {
        event.preventDefault();
        void save.run();
      }}
    >
      <div class="form-grid">
        {!group && (
          <Field label="Group name">
            <input required pattern="[A-Za-z0-9][A-Za-z0-9._\-]{0,63}" value={name} onInput={(event) => setName(valueOf(event))} />
          </Field>
        )}
        <Field label="Display name">
          <input maxLength={200} value={displayName} onInput={(event) => setDisplayName(valueOf(event))} />
        </Field>
      </div>
      <fieldset>
        <legend>Models (lower priority is tried first)</legend>
        {rows.map((row, index) => (
          <div class="row" key={index}>
            <Field label={`Model ${index + 1}`}>
              <input
                required={index === 0}
                class="mono"
                value={row.model_name}
                onInput={(event) => setRows((all) => all.map((item, i) => (i === index ? { ...item, model_name: valueOf(event) } : item)))}
              />
            </Field>
            <Field label={`Priority of model ${index + 1}`}>
              <input
                type="number"
                min={0}
                max={1000}
                value={row.priority}
                onInput={(event) => setRows((all) => all.map((item, i) => (i === index ? { ...item, priority: valueOf(event) } : item)))}
              />
            </Field>
            <button type="button" class="small" aria-label={`Remove model ${index + 1}`} onClick={() => setRows((all) => all.filter((_, i) => i !== index))} disabled={rows.length === 1}>
              Remove
            </button>
          </div>
        ))}
        <button type="button" onClick={() => setRows((all) => [...all, { model_name: '', priority: String(all.length) }])}>
          Add a model
        </button>
      </fieldset>
      <ErrorNote error={save.error} />
      <button type="submit" class="primary" disabled={save.pending}>
        {group ? 'Save model group' : 'Create model group'}
      </button>
    </form>
  );
  return group ? (
    form
  ) : (
    <details class="card">
      <summary>
        <h2>{label}</h2>
      </summary>
      {form}
    </details>
  );
}

function PriceForm({ onSaved, suggestions }: { onSaved: () => void; suggestions: string[] }) {
  const [model, setModel] = useState('');
  const [input, setInput] = useState('');
  const [output, setOutput] = useState('');
  const save = useAction(async () => {
    await admin().modelPrices.set(model, { input_usd_per_million: input, output_usd_per_million: output });
    setModel('');
    setInput('');
    setOutput('');
    onSaved();
  });
  return (
    <form
      class="inline-form"
      aria-label="Set a model price"
      onSubmit={(event) => {
        event.preventDefault();
        void save.run();
      }}
    >
      <Field label="Price model">
        <input required list="unpriced-models" class="mono" value={model} onInput={(event) => setModel(valueOf(event))} />
        <datalist id="unpriced-models">
          {suggestions.map((name) => (
            <option key={name} value={name} />
          ))}
        </datalist>
      </Field>
      <Field label="Input USD per million">
        <input required inputMode="decimal" pattern="\d{1,9}(\.\d{1,6})?" value={input} onInput={(event) => setInput(valueOf(event))} />
      </Field>
      <Field label="Output USD per million">
        <input required inputMode="decimal" pattern="\d{1,9}(\.\d{1,6})?" value={output} onInput={(event) => setOutput(valueOf(event))} />
      </Field>
      <button type="submit" class="primary" disabled={save.pending}>
        Set price
      </button>
      <ErrorNote error={save.error} />
    </form>
  );
}
