import { cloneElement, type ComponentChildren, type TargetedEvent, type VNode } from 'preact';
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { useLocation } from 'preact-iso';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { signOut } from './api';

const NAV = [
  ['/console/', 'Overview'],
  ['/console/organizations', 'Organizations'],
  ['/console/teams', 'Teams'],
  ['/console/model-groups', 'Model groups'],
  ['/console/jobs', 'Jobs'],
  ['/console/webhooks', 'Webhooks'],
] as const;

export function Layout({ children }: { children: ComponentChildren }) {
  const { path } = useLocation();
  const current = (href: string) => (href === '/console/' ? path === '/console/' || path === '/console' : path.startsWith(href));
  return (
    <>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header class="top">
        <span class="brand">creditgate</span>
        <nav aria-label="Main">
          <ul>
            {NAV.map(([href, label]) => (
              <li key={href}>
                <a href={href} aria-current={current(href) ? 'page' : undefined}>
                  {label}
                </a>
              </li>
            ))}
          </ul>
        </nav>
        <button type="button" class="link" onClick={signOut}>
          Sign out
        </button>
      </header>
      <main id="main" tabIndex={-1}>
        {children}
      </main>
    </>
  );
}

export function Page({ title, actions, children }: { title: string; actions?: ComponentChildren; children: ComponentChildren }) {
  useEffect(() => {
    document.title = `${title} · creditgate`;
  }, [title]);
  return (
    <>
      <div class="page-head">
        <h1>{title}</h1>
        {actions}
      </div>
      {children}
    </>
  );
}

export function ErrorNote({ error }: { error: string | undefined }) {
  return error ? (
    <p class="error" role="alert">
      {error}
    </p>
  ) : null;
}

export function Loading({ what }: { what: string }) {
  return (
    <p class="muted" aria-live="polite">
      Loading {what}…
    </p>
  );
}

export function Stat({ label, value, hint }: { label: string; value: ComponentChildren; hint?: string }) {
  return (
    <div class="stat">
      <div class="stat-label">{label}</div>
      <div class="stat-value">{value}</div>
      {hint && <div class="stat-hint">{hint}</div>}
    </div>
  );
}

/** Keyset pages: the cursors of the pages before this one are kept, so Previous goes back exactly. */
export function usePager() {
  const [cursors, setCursors] = useState<(string | undefined)[]>([undefined]);
  const cursor = cursors[cursors.length - 1];
  return {
    cursor,
    page: cursors.length,
    next: (nextCursor: string | null) => nextCursor && setCursors((stack) => [...stack, nextCursor]),
    previous: () => setCursors((stack) => (stack.length > 1 ? stack.slice(0, -1) : stack)),
    reset: () => setCursors([undefined]),
  };
}

export function Pager({ pager, nextCursor, label }: { pager: ReturnType<typeof usePager>; nextCursor: string | null | undefined; label: string }) {
  return (
    <nav class="pager" aria-label={`${label} pages`}>
      <button type="button" onClick={pager.previous} disabled={pager.page <= 1}>
        Previous page
      </button>
      <span aria-live="polite">Page {pager.page}</span>
      <button type="button" onClick={() => pager.next(nextCursor ?? null)} disabled={!nextCursor}>
        Next page
      </button>
    </nav>
  );
}

let fieldCount = 0;

/** A labelled control: the label names it exactly, and a hint (if any) describes it (aria-describedby). */
export function Field({ label, children, hint }: { label: string; children: VNode | VNode[]; hint?: string }) {
  const id = useMemo(() => `field-${++fieldCount}`, []);
  const [control, ...rest] = Array.isArray(children) ? children : [children];
  return (
    <div class="field">
      <label for={id}>{label}</label>
      {control && cloneElement(control, { id, ...(hint && { 'aria-describedby': `${id}-hint` }) })}
      {rest}
      {hint && (
        <small id={`${id}-hint`} class="muted">
          {hint}
        </small>
      )}
    </div>
  );
}

/** A button that asks first, in a modal dialog (Escape or Cancel closes it; focus returns to the button). */
export function ConfirmButton(props: { label: string; question: string; confirm: string; onConfirm: () => void; disabled?: boolean; danger?: boolean }) {
  const dialog = useRef<HTMLDialogElement>(null);
  return (
    <>
      <button type="button" class={props.danger ? 'danger' : undefined} disabled={props.disabled} onClick={() => dialog.current?.showModal()}>
        {props.label}
      </button>
      <dialog ref={dialog} aria-label={props.label}>
        <form method="dialog">
          <p>{props.question}</p>
          <div class="row">
            <button value="cancel">Cancel</button>
            <button
              type="submit"
              value="confirm"
              class={props.danger ? 'danger' : 'primary'}
              onClick={(event) => {
                event.preventDefault();
                dialog.current?.close();
                props.onConfirm();
              }}
            >
              {props.confirm}
            </button>
          </div>
        </form>
      </dialog>
    </>
  );
}

/** A secret shown once: readable and copyable now, never fetched again. `kept` says what creditgate keeps of it. */
export function SecretOnce({ label, secret, onDone, kept = 'only its hash' }: { label: string; secret: string; onDone: () => void; kept?: string }) {
  const [copied, setCopied] = useState(false);
  return (
    <div class="secret" role="region" aria-label={label}>
      <p>
        <strong>{label}</strong> — shown only this once. Copy it now: creditgate keeps {kept}.
      </p>
      <div class="row">
        <input readOnly value={secret} aria-label={label} class="mono" onFocus={(event) => event.currentTarget.select()} />
        <button
          type="button"
          onClick={async () => {
            await navigator.clipboard.writeText(secret);
            setCopied(true);
          }}
        >
          {copied ? 'Copied' : 'Copy'}
        </button>
        <button type="button" onClick={onDone}>
          Done
        </button>
      </div>
    </div>
  );
}

export function StatusBadge({ status }: { status: string }) {
  return <span class={`badge badge-${status}`}>{status}</span>;
}

/** A sortable column header: a button, with aria-sort on the cell. */
export function SortHeader<S extends string>(props: { label: string; column: S; sort: S; order: 'asc' | 'desc'; onSort: (column: S, order: 'asc' | 'desc') => void }) {
  const active = props.sort === props.column;
  const nextOrder = active && props.order === 'asc' ? 'desc' : 'asc';
  return (
    <th aria-sort={active ? (props.order === 'asc' ? 'ascending' : 'descending') : 'none'} scope="col">
      <button type="button" class="link" onClick={() => props.onSort(props.column, nextOrder)}>
        {props.label}
        {active ? (props.order === 'asc' ? ' ▲' : ' ▼') : ''}
      </button>
    </th>
  );
}

export interface Series {
  label: string;
  values: (number | null)[];
  color: string;
  /** Values on the right-hand axis. */
  right?: boolean;
}

/** A line chart (uPlot, canvas): days or hours on x; a caption describes it for screen readers. */
export function LineChart({ title, x, series, height = 220, leftLabel, rightLabel }: { title: string; x: number[]; series: Series[]; height?: number; leftLabel?: string; rightLabel?: string }) {
  const box = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const element = box.current;
    if (!element) return;
    const hasRight = series.some((line) => line.right);
    const plot = new uPlot(
      {
        width: Math.max(320, element.clientWidth),
        height,
        series: [{}, ...series.map((line) => ({ label: line.label, stroke: line.color, width: 2, scale: line.right ? 'right' : 'left', points: { show: false } }))],
        scales: { x: { time: true }, left: {}, right: {} },
        axes: [
          {},
          { scale: 'left', label: leftLabel, size: 60 },
          ...(hasRight ? [{ scale: 'right', side: 1 as const, label: rightLabel, grid: { show: false }, size: 60 }] : []),
        ],
        legend: { show: true },
      },
      [x, ...series.map((line) => line.values)] as uPlot.AlignedData,
      element,
    );
    const resize = () => plot.setSize({ width: Math.max(320, element.clientWidth), height });
    window.addEventListener('resize', resize);
    return () => {
      window.removeEventListener('resize', resize);
      plot.destroy();
    };
  }, [x, series, height, leftLabel, rightLabel]);
  return (
    <figure class="chart">
      <figcaption>{title}</figcaption>
      <div ref={box} role="img" aria-label={`${title}: ${series.map((line) => line.label).join(', ')}`} />
    </figure>
  );
}

export function Section({ title, children, id }: { title: string; children: ComponentChildren; id?: string }) {
  return (
    <section class="card" aria-labelledby={id ? `${id}-title` : undefined}>
      <h2 id={id ? `${id}-title` : undefined}>{title}</h2>
      {children}
    </section>
  );
}

export type InputEvent = TargetedEvent<HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement, Event>;
export const valueOf = (event: InputEvent) => event.currentTarget.value;
